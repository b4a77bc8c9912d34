//! Harness for the integration tests: a client for the control plane that
//! `tests/control-plane up` started, and small helpers the tests share.

pub mod chaos;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

pub mod kwok;

/// Where `tests/control-plane up` writes its admin kubeconfig by default.
pub fn default_kubeconfig() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/control-plane/kubeconfig")
}

/// The kubeconfig the tests use: `$KUBECONFIG`, else the default control plane's.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(default_kubeconfig)
}

/// A client for the test control plane, after checking that it answers.
///
/// Fails, rather than skipping the test, with a message that says how to start one.
pub async fn client() -> anyhow::Result<Client> {
    client_from(&kubeconfig_path()).await
}

/// A client from a given kubeconfig file, checked to answer.
pub async fn client_from(path: &std::path::Path) -> anyhow::Result<Client> {
    let how = "start one with `tests/control-plane up` and `export KUBECONFIG=...` (or run everything with `tests/run`)";
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| {
        format!(
            "no control plane: cannot read kubeconfig {}; {how}",
            path.display()
        )
    })?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {} is unusable; {how}", path.display()))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    let client = Client::try_from(config)?;
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(err)) => bail!(
            "no control plane answers at the server in {}: {err}; {how}",
            path.display()
        ),
        Err(_) => bail!(
            "no control plane answered within 10 s at the server in {}; {how}",
            path.display()
        ),
    }
}

/// A name unique to this test run, for objects a test creates (`prefix-1a2b3c`).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{:x}{n}", (nanos ^ std::process::id()) & 0xffffff)
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout` saying what it waited for.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads `name` from `api` every 200 ms until `check` returns `Some` for it, or fails after
/// `timeout` saying what it waited for.
pub async fn get_until<K, T>(
    api: &kube::Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(K) -> Option<T>,
) -> anyhow::Result<T>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let check = &check;
    eventually(
        what,
        timeout,
        || async move { Ok(check(api.get(name).await?)) },
    )
    .await
}

/// Applies every fabbrica CRD with server-side apply and waits until the API server serves them.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("fabbrica-tests").force();
    for crd in fabbrica_crds::crd::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &params, &Patch::Apply(&crd)).await?;
        kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        )
        .await?;
    }
    Ok(())
}

/// Runs kubectl against the test control plane and returns what it printed, or fails with its stderr.
pub fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .context("running kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The workspace's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of an ecosystem tool (`helm`, `trivy`), fetched once by `tests/tools`.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let output = std::process::Command::new(repo_root().join("tests/tools"))
        .arg(name)
        .output()
        .with_context(|| format!("running tests/tools {name}"))?;
    if !output.status.success() {
        bail!(
            "tests/tools {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// Runs a command and returns its exit status, stdout and stderr.
pub fn run(program: &std::path::Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A fresh, empty folder under the target directory for one test's files.
pub fn scratch_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = repo_root()
        .join("target/test-scratch")
        .join(unique_name(prefix));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs the `fabbrica` command line in-process and returns its exit code.
pub fn fabbrica(args: &[&str]) -> anyhow::Result<std::process::ExitCode> {
    use clap::Parser;
    let cli =
        fabbrica::Cli::try_parse_from(std::iter::once("fabbrica").chain(args.iter().copied()))?;
    fabbrica::run(cli)
}

/// The annotation that hands a Node to kwok, the simulated kubelet `tests/control-plane` runs.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Registers `node` as its kubelet would, with a simulated kubelet (kwok) behind it: created
/// with its `kubernetes.io/hostname` label, `gpus` allocatable `nvidia.com/gpu` (and a DGX's CPU, memory and Pod capacity) in its
/// status, then reported Ready and its lease renewed by kwok. Pods bound to it go Running.
/// The control plane's kwok plays it, unless its [`KWOK_NODE_ANNOTATION`] names another
/// ([`kwok::Kubelets`]).
pub async fn register_ready_node(
    api: &kube::Api<k8s_openapi::api::core::v1::Node>,
    node: &k8s_openapi::api::core::v1::Node,
    gpus: &str,
) -> anyhow::Result<()> {
    use kube::api::PostParams;
    let mut node = node.clone();
    let name = node.name_any();
    // The label a kubelet gives its Node; volumes pinned to a Node select it by this.
    node.metadata
        .labels
        .get_or_insert_default()
        .entry("kubernetes.io/hostname".to_owned())
        .or_insert(name);
    node.metadata
        .annotations
        .get_or_insert_default()
        .entry(KWOK_NODE_ANNOTATION.to_owned())
        .or_insert_with(|| "fake".to_owned());
    node.status = Some(serde_json::from_value(serde_json::json!({
        "capacity": {fabbrica_crds::labels::GPU_RESOURCE: gpus, "cpu": "224", "memory": "2Ti", "pods": "110"},
        "allocatable": {fabbrica_crds::labels::GPU_RESOURCE: gpus, "cpu": "220", "memory": "2000Gi", "pods": "110"},
    }))?);
    api.create(&PostParams::default(), &node).await?;
    Ok(())
}

/// A Node of a catalog GPU system, labelled as the GPU Operator's feature discovery labels it
/// (`nvidia.com/gpu.product`, `.count`, `.memory` in MiB, and `nvidia.com/gpu.clique`, the
/// NVLink domain, on GB200 NVL72 trays: `rack` numbers the domain), with `labels` added.
/// Register it with [`register_gpu_node`].
pub fn gpu_node(
    name: &str,
    system: fabbrica_crds::v1alpha1::GpuSystem,
    rack: u32,
    labels: std::collections::BTreeMap<String, String>,
) -> anyhow::Result<k8s_openapi::api::core::v1::Node> {
    use fabbrica_crds::v1alpha1::GpuSystem;
    let spec = fabbrica_crds::catalog::system(system);
    let product = match system {
        GpuSystem::DgxH100 => "NVIDIA-H100-80GB-HBM3",
        GpuSystem::DgxH200 => "NVIDIA-H200",
        GpuSystem::DgxB200 => "NVIDIA-B200",
        GpuSystem::Gb200Nvl72 => "NVIDIA-GB200",
    };
    let mut all = std::collections::BTreeMap::from([
        ("nvidia.com/gpu.present".to_owned(), "true".to_owned()),
        ("nvidia.com/gpu.product".to_owned(), product.to_owned()),
        (
            "nvidia.com/gpu.count".to_owned(),
            spec.gpus_per_node.to_string(),
        ),
        (
            "nvidia.com/gpu.memory".to_owned(),
            (spec.gpu_memory_gb * 1024).to_string(),
        ),
    ]);
    if system == GpuSystem::Gb200Nvl72 {
        // GFD's clique label: the NVLink fabric's cluster UUID and the clique within it.
        all.insert(
            "nvidia.com/gpu.clique".to_owned(),
            format!("6f1e0c52-5b1a-4d7e-9a43-0c1a2b3c4d5e.{rack}"),
        );
    }
    all.extend(labels);
    Ok(serde_json::from_value(
        serde_json::json!({"metadata": {"name": name, "labels": all}}),
    )?)
}

/// The labels a GPU Node of a real site carries besides the GPU ones of [`gpu_node`]: the
/// kubelet's own, the rest of NVIDIA GPU feature discovery's, the GPU Operator's deployment
/// switches and a few of Node Feature Discovery's; 47 in all, so that the operator holds as many
/// labels per Node as it would at a site. One value (the hostname) is unique to each Node.
pub fn site_labels(name: &str, i: usize) -> std::collections::BTreeMap<String, String> {
    let mut labels: std::collections::BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
        ("node-role.kubernetes.io/worker", ""),
        ("nvidia.com/cuda.driver-version.full", "580.95.05"),
        ("nvidia.com/cuda.driver-version.major", "580"),
        ("nvidia.com/cuda.driver-version.minor", "95"),
        ("nvidia.com/cuda.driver-version.revision", "05"),
        ("nvidia.com/cuda.driver.major", "580"),
        ("nvidia.com/cuda.driver.minor", "95"),
        ("nvidia.com/cuda.driver.rev", "05"),
        ("nvidia.com/cuda.runtime-version.full", "13.0"),
        ("nvidia.com/cuda.runtime-version.major", "13"),
        ("nvidia.com/cuda.runtime-version.minor", "0"),
        ("nvidia.com/cuda.runtime.major", "13"),
        ("nvidia.com/cuda.runtime.minor", "0"),
        ("nvidia.com/gfd.timestamp", "1764763200"),
        ("nvidia.com/gpu.compute.major", "10"),
        ("nvidia.com/gpu.compute.minor", "0"),
        ("nvidia.com/gpu.family", "blackwell"),
        ("nvidia.com/gpu.machine", "DGX-B200"),
        ("nvidia.com/gpu.mode", "compute"),
        ("nvidia.com/gpu.replicas", "1"),
        ("nvidia.com/gpu.sharing-strategy", "none"),
        ("nvidia.com/mig.capable", "true"),
        ("nvidia.com/mig.strategy", "mixed"),
        ("nvidia.com/mps.capable", "false"),
        ("nvidia.com/vgpu.present", "false"),
        ("nvidia.com/gpu.deploy.container-toolkit", "true"),
        ("nvidia.com/gpu.deploy.dcgm", "true"),
        ("nvidia.com/gpu.deploy.dcgm-exporter", "true"),
        ("nvidia.com/gpu.deploy.device-plugin", "true"),
        ("nvidia.com/gpu.deploy.driver", "pre-installed"),
        ("nvidia.com/gpu.deploy.gpu-feature-discovery", "true"),
        ("nvidia.com/gpu.deploy.mig-manager", "true"),
        ("nvidia.com/gpu.deploy.node-status-exporter", "true"),
        ("nvidia.com/gpu.deploy.operator-validator", "true"),
        ("feature.node.kubernetes.io/cpu-cpuid.AVX512F", "true"),
        (
            "feature.node.kubernetes.io/cpu-hardware_multithreading",
            "true",
        ),
        (
            "feature.node.kubernetes.io/kernel-version.full",
            "6.8.0-60-generic",
        ),
        ("feature.node.kubernetes.io/pci-10de.present", "true"),
        ("feature.node.kubernetes.io/pci-15b3.present", "true"),
        ("feature.node.kubernetes.io/system-os_release.ID", "ubuntu"),
        (
            "feature.node.kubernetes.io/system-os_release.VERSION_ID",
            "24.04",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    labels.insert("kubernetes.io/hostname".to_owned(), name.to_owned());
    labels.insert(
        "topology.kubernetes.io/zone".to_owned(),
        format!("hall-{}", i / 4096),
    );
    labels
}

/// Registers a [`gpu_node`] with its system's GPUs allocatable, managed by kwok.
pub async fn register_gpu_node(
    api: &kube::Api<k8s_openapi::api::core::v1::Node>,
    node: &k8s_openapi::api::core::v1::Node,
) -> anyhow::Result<()> {
    let gpus = node
        .labels()
        .get("nvidia.com/gpu.count")
        .context("a gpu_node carries nvidia.com/gpu.count")?
        .clone();
    register_ready_node(api, node, &gpus).await
}

/// Fails with trivy's report when `trivy config` (with `extra` arguments) finds a HIGH or
/// CRITICAL misconfiguration in `target`, a path from the repository root.
pub fn assert_no_high_or_critical_misconfiguration(
    target: &str,
    extra: &[&str],
) -> anyhow::Result<()> {
    let trivy = tool("trivy")?;
    let mut args = vec![
        "config",
        "--skip-check-update",
        "--quiet",
        "--severity",
        "HIGH,CRITICAL",
        "--exit-code",
        "1",
    ];
    args.extend_from_slice(extra);
    args.push(target);
    let (ok, out, err) = run(&trivy, &args)?;
    anyhow::ensure!(
        ok,
        "trivy found HIGH or CRITICAL misconfigurations in {target}:\n{out}\n{err}"
    );
    Ok(())
}

/// The operator, running in this process (as `fabbrica_operator::run` with `settings`) until
/// stopped or killed.
#[derive(Debug)]
pub struct InProcessOperator {
    /// Its metrics, as its `/metrics` would serve them.
    pub metrics: std::sync::Arc<fabbrica_operator::metrics::Metrics>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<fabbrica_operator::Result<()>>,
}

impl InProcessOperator {
    /// Starts it on `client`.
    pub fn start(client: &kube::Client, settings: fabbrica_operator::Settings) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = fabbrica_operator::metrics::Metrics::new();
        let task = tokio::spawn(fabbrica_operator::run(
            client.clone(),
            settings,
            metrics.clone(),
            std::sync::Arc::new(fabbrica_operator::http::Readiness::default()),
            std::sync::Arc::new(fabbrica_operator::clock::SystemClock),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            metrics,
            stop,
            task,
        }
    }

    /// Asks it to stop and waits (at most 30 s) until it has.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .context("the operator did not stop within 30 s")???;
        Ok(())
    }

    /// Ends it at once, in the middle of whatever it does, as a crash would: every request in
    /// flight is dropped.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
