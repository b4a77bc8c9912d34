//! Faults during convergence, for the chaos test (`tests/tests/chaos.rs`), the failover test
//! (`tests/tests/leader.rs`) and the full-size bench (`tests/bench-chaos`): the operator binary
//! as a child process that is killed with SIGKILL at seeded moments, restarts of the API server
//! and etcd (`tests/control-plane restart`), a Factory edited mid-way, and the API server's
//! audit log read for what each operator process wrote.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fabbrica_crds::v1alpha1::{Factory, GpuSystem, condition};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::{gpu_node, kubeconfig_path, register_gpu_node, repo_root, unique_name};

/// The label on the Nodes and the Factory of one run; the operator selects its Factory by it.
pub const RUN_LABEL: &str = "chaos.fabbrica.io/run";
/// The environment variable that fixes the seed of the faults' moments, to repeat a run.
pub const SEED_ENV: &str = "FABBRICA_CHAOS_SEED";
/// The user agent the operator sends: `fabbrica-operator/VERSION (IDENTITY)`.
const AGENT_PREFIX: &str = "fabbrica-operator/";
const MANAGER: &str = "fabbrica-chaos";
const POOL_LABEL: &str = "chaos.fabbrica.io/pool";
/// A label and a taint someone else put on every Node; fabbrica must keep both.
const FOREIGN_LABEL: &str = "example.com/rack";
const FOREIGN_TAINT: &str = "example.com/dedicated";

/// The control plane's state folder: its kubeconfigs, logs and audit log.
pub fn state_dir() -> anyhow::Result<PathBuf> {
    Ok(kubeconfig_path()
        .parent()
        .context("the kubeconfig has a folder")?
        .to_path_buf())
}

/// The operator binary (`target/debug/fabbrica-operator`, or `$FABBRICA_OPERATOR_BIN`),
/// built first when it is the debug one.
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FABBRICA_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-q", "-p", "fabbrica-operator"])
        .args(["--bin", "fabbrica-operator"])
        .current_dir(repo_root());
    // What cargo sets for this test binary (its package's name, version and folder) would look
    // like a changed environment to build scripts that watch those variables (ring's), and
    // rebuild them and everything above them, here and again in the next `cargo test`.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*key)
        {
            build.env_remove(&*key);
        }
    }
    let status = build.status()?;
    anyhow::ensure!(status.success(), "building fabbrica-operator failed");
    Ok(repo_root().join("target/debug/fabbrica-operator"))
}

/// One operator process, started with the admin kubeconfig and `--identity`, which its user
/// agent carries into the audit log. Killed with SIGKILL when dropped.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    /// Its `--identity`.
    pub identity: String,
}

impl OperatorProcess {
    /// Starts `binary` as `identity` with `args` after the common ones, its log appended to `log`.
    pub fn start(binary: &Path, identity: &str, args: &[&str], log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(binary)
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(["--metrics-addr", "127.0.0.1:0", "--identity", identity])
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            identity: identity.to_owned(),
        })
    }

    /// Ends it with SIGKILL, as a node failure or the OOM killer would, and reaps it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// How it ended, if it has ended on its own.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops one control-plane component and starts it again with the same flags and data
/// (`tests/control-plane restart SERVICE`); returns once the API server is ready again.
pub async fn restart(service: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(repo_root().join("tests/control-plane"))
        .args(["restart", service])
        .env("FABBRICA_CONTROL_PLANE_DIR", state_dir()?)
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "tests/control-plane restart {service} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A write request of an operator process, as the API server's audit log recorded it.
#[derive(Clone, Debug)]
pub struct Write {
    /// The `--identity` of the process that sent it.
    pub identity: String,
    /// `verb resource namespace/name` and the response code.
    pub what: String,
    /// When the API server received it.
    pub received: Timestamp,
    /// When the API server answered it.
    pub answered: Timestamp,
}

/// The audit log's current length, the offset from which [`operator_writes`] reads.
pub fn audit_end() -> anyhow::Result<u64> {
    Ok(std::fs::metadata(state_dir()?.join("audit.log")).map_or(0, |m| m.len()))
}

/// Every write (create, update, patch, delete) sent with the operator's user agent since the
/// byte offset `from` of the audit log, Lease renewals aside (leader election's heartbeat).
pub fn operator_writes(from: u64) -> anyhow::Result<Vec<Write>> {
    let mut file = std::fs::File::open(state_dir()?.join("audit.log"))?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut writes = Vec::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(agent) = event["userAgent"].as_str() else {
            continue;
        };
        let verb = event["verb"].as_str().unwrap_or_default();
        let object = &event["objectRef"];
        if !agent.starts_with(AGENT_PREFIX)
            || event["stage"] != "ResponseComplete"
            || !matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
            || object["resource"] == "leases"
        {
            continue;
        }
        let identity = agent
            .split_once(" (")
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or_default()
            .to_owned();
        let time = |key: &str| -> anyhow::Result<Timestamp> {
            event[key]
                .as_str()
                .with_context(|| format!("audit event without {key}: {line}"))?
                .parse()
                .with_context(|| format!("audit event's {key}"))
        };
        writes.push(Write {
            identity,
            what: format!(
                "{verb} {}{} {}/{} ({})",
                object["resource"].as_str().unwrap_or_default(),
                object["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default(),
                object["namespace"].as_str().unwrap_or_default(),
                object["name"].as_str().unwrap_or_default(),
                event["responseStatus"]["code"]
            ),
            received: time("requestReceivedTimestamp")?,
            answered: time("stageTimestamp")?,
        });
    }
    Ok(writes)
}

/// The Nodes of one run: half DGX H100 (pool `a`), half DGX B200 (pool `b`), each with a
/// foreign label and taint, registered with kwok as their kubelet.
pub async fn register_nodes(client: &Client, run: &str, count: usize) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let (pool, system) = if i % 2 == 0 {
                    ("a", GpuSystem::DgxH100)
                } else {
                    ("b", GpuSystem::DgxB200)
                };
                let labels = BTreeMap::from([
                    (RUN_LABEL.to_owned(), run.to_owned()),
                    (POOL_LABEL.to_owned(), pool.to_owned()),
                    (FOREIGN_LABEL.to_owned(), format!("rack-{}", i / 16)),
                ]);
                let mut node = gpu_node(&format!("{run}-{i:05}"), system, 0, labels)?;
                node.spec = Some(serde_json::from_value(json!({"taints": [
                    {"key": FOREIGN_TAINT, "value": "ml", "effect": "PreferNoSchedule"}]}))?);
                register_gpu_node(&api, &node).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Deletes the Nodes of one run.
pub async fn delete_nodes(client: &Client, run: &str) -> anyhow::Result<()> {
    Api::<Node>::all(client.clone())
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("{RUN_LABEL}={run}")),
        )
        .await?;
    Ok(())
}

/// The Factory of one run over `nodes` Nodes. `edited` is the spec after the edit: pool `a`'s
/// taint has another value, pool `b` is time-sliced and tainted, the `project` tier gave way
/// to a `datasets` tier.
pub fn factory(run: &str, nodes: usize, edited: bool) -> Value {
    let b_sharing = if edited {
        json!({"timeSlicing": {"replicas": 4}})
    } else {
        json!({})
    };
    let b_taints = if edited {
        json!([{"key": "fabbrica.io/shared-gpu", "effect": "NoSchedule"}])
    } else {
        json!([])
    };
    let tier = if edited {
        json!({"name": "datasets", "role": "datasets", "provisioner": "csi.example.com", "capacity": "4Pi"})
    } else {
        json!({"name": "project", "role": "project", "provisioner": "csi.example.com", "capacity": "2Pi"})
    };
    json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": run, "labels": {RUN_LABEL: run}},
        "spec": {
            "site": {"name": "chaos", "country": "IT", "tier": "aiFactory"},
            "gpuPools": [
                {"name": "a", "nodeSelector": {RUN_LABEL: run, POOL_LABEL: "a"}, "system": "dgx-h100",
                 "expectedNodes": nodes.div_ceil(2),
                 "taints": [{"key": "nvidia.com/gpu", "value": if edited { "h100" } else { "present" }, "effect": "NoSchedule"}]},
                {"name": "b", "nodeSelector": {RUN_LABEL: run, POOL_LABEL: "b"}, "system": "dgx-b200",
                 "expectedNodes": nodes / 2, "sharing": b_sharing, "taints": b_taints},
            ],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
                "topology": {"source": "nodeOrder", "nodesPerScalableUnit": 32}},
            "storageTiers": [
                {"name": "scratch", "role": "scratch", "provisioner": "csi.example.com", "capacity": "1Pi"},
                tier,
            ],
        },
    })
}

/// Applies a Factory, retrying for a minute while the API server is not back yet.
pub async fn apply_factory(client: &Client, body: &Value) -> anyhow::Result<()> {
    let api: Api<Factory> = Api::all(client.clone());
    let name = body["metadata"]["name"].as_str().context("a name")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match api
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() < deadline && unavailable(&err) => {
                eprintln!("chaos: applying Factory {name}: {err}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(err).context(format!("applying Factory {name}")),
        }
    }
}

/// Whether an error says the API server (or etcd behind it) is not there yet, rather than
/// refusing the request.
fn unavailable(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => {
            matches!(status.code, 429 | 500..=504)
                && !status.message.contains("field not declared in schema")
        }
        _ => true,
    }
}

/// Whether the Factory is converged: its status describes its current generation, Ready is
/// True and every pool has all its expected Nodes ready. Errors (an API server restarting)
/// count as not yet.
pub async fn converged(client: &Client, name: &str) -> bool {
    let Ok(factory) = Api::<Factory>::all(client.clone()).get(name).await else {
        return false;
    };
    let Some(status) = &factory.status else {
        return false;
    };
    status.observed_generation == factory.metadata.generation
        && condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True")
        && status.pools.len() == factory.spec.gpu_pools.len()
        && status
            .pools
            .iter()
            .all(|p| p.nodes_ready == p.nodes_expected)
}

/// Waits until [`converged`], failing after `timeout`; the time it took.
pub async fn wait_converged(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !converged(client, name).await {
        if started.elapsed() > timeout {
            bail!("Factory {name} did not converge within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(started.elapsed())
}

/// What a user sees of a run's result: every Node's labels, taints (Kubernetes' own
/// `node.kubernetes.io/` taints aside) and fabbrica's annotations; the operator's ConfigMaps in
/// `namespace` and StorageClasses; the Factory's status. Times, generations, uids and resource
/// versions are left out: they differ between any two runs.
pub async fn snapshot(client: &Client, run: &str, namespace: &str) -> anyhow::Result<Value> {
    let selector = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    let mut nodes = serde_json::Map::new();
    for node in Api::<Node>::all(client.clone())
        .list(&selector)
        .await?
        .items
    {
        let taints: Vec<_> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.key.starts_with("node.kubernetes.io/"))
            .collect();
        let annotations: BTreeMap<_, _> = node
            .annotations()
            .iter()
            .filter(|(k, _)| k.starts_with("fabbrica.io/"))
            .collect();
        nodes.insert(
            node.name_any(),
            json!({"labels": node.labels(), "taints": taints, "annotations": annotations}),
        );
    }
    let owned = ListParams::default().labels(&format!("{}={run}", fabbrica_crds::labels::FACTORY));
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&owned)
        .await?
        .items;
    let classes = Api::<StorageClass>::all(client.clone())
        .list(&owned)
        .await?
        .items;
    let status = Api::<Factory>::all(client.clone())
        .get(run)
        .await?
        .status
        .context("the Factory has a status")?;
    let mut all = json!({
        "nodes": nodes,
        "configMaps": config_maps,
        "storageClasses": classes,
        "status": status,
    });
    strip(
        &mut all,
        &[
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "lastTransitionTime",
            "observedGeneration",
        ],
    );
    Ok(all)
}

fn strip(value: &mut Value, keys: &[&str]) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !keys.contains(&k.as_str()));
            map.values_mut().for_each(|v| strip(v, keys));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, keys)),
        _ => {}
    }
}

/// The paths where two snapshots differ, with both values (at most `limit`).
pub fn differences(expected: &Value, actual: &Value, limit: usize) -> Vec<String> {
    fn walk(path: String, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(
                        format!("{path}.{k}"),
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (a, b)) in x.iter().zip(y).enumerate() {
                    walk(format!("{path}[{i}]"), a, b, out);
                }
            }
            _ if a != b => out.push(format!("{path}: undisturbed {a}, after the faults {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(String::new(), expected, actual, &mut out);
    out.truncate(limit);
    out
}

/// Nodes of the run that lost the foreign label or taint put on them at registration.
pub async fn foreign_lost(client: &Client, run: &str) -> anyhow::Result<Vec<String>> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await?
        .items;
    Ok(nodes
        .iter()
        .filter(|node| {
            let tainted = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == FOREIGN_TAINT));
            !tainted || !node.labels().contains_key(FOREIGN_LABEL)
        })
        .map(ResourceExt::name_any)
        .collect())
}

/// The seed: `$FABBRICA_CHAOS_SEED` when set, else the clock's.
pub fn seed() -> anyhow::Result<u64> {
    match std::env::var(SEED_ENV) {
        Ok(seed) => seed
            .parse()
            .with_context(|| format!("{SEED_ENV}={seed} is not a number")),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64),
    }
}

/// How big a run is and how hard it is shaken.
#[derive(Clone, Debug)]
pub struct Chaos {
    /// Simulated GPU Nodes.
    pub nodes: usize,
    /// SIGKILLs of the operator.
    pub kills: usize,
    /// The longest pause before each fault (drawn uniformly from zero to this).
    pub max_gap: Duration,
    /// The steady-state window in which no write may happen.
    pub quiet: Duration,
    /// How long each convergence may take before the run fails.
    pub timeout: Duration,
    /// The seed of the faults' order and moments.
    pub seed: u64,
}

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of the operator, started again at once (as its Deployment would).
    Kill,
    /// The API server stopped and started with the same flags.
    RestartApiServer,
    /// etcd stopped and started with the same data.
    RestartEtcd,
    /// The Factory's spec changed to the edited one.
    Edit,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed it ran with.
    pub seed: u64,
    /// The undisturbed run: start to converged.
    pub undisturbed: Duration,
    /// The disturbed run: start to converged, faults included.
    pub disturbed: Duration,
    /// The faults, each with the seconds since the disturbed run's start.
    pub faults: Vec<(f64, Fault)>,
    /// Times the operator ended on its own (and was started again, as a Deployment would).
    pub exits: usize,
    /// Nodes checked for the foreign label and taint.
    pub nodes: usize,
    /// Operator writes in the steady-state window: only the Factory's status and Events, and
    /// only when Nodes changed readiness meanwhile ([`Report::readiness_changes`]).
    pub steady_writes: usize,
    /// The run's Nodes whose Ready condition changed in the steady-state window.
    pub readiness_changes: usize,
}

/// How many of the run's Nodes had their Ready condition change after `since`.
async fn readiness_changed_since(
    client: &Client,
    run: &str,
    since: Timestamp,
) -> anyhow::Result<usize> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await?
        .items;
    Ok(nodes
        .iter()
        .filter(|node| {
            node.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| {
                    c.type_ == "Ready"
                        && c.last_transition_time.as_ref().is_some_and(|t| t.0 > since)
                })
        })
        .count())
}

/// Runs one chaos trial on the control plane of `$KUBECONFIG`: an undisturbed convergence of
/// the edited Factory (its result recorded, then the Factory deleted), then the original
/// Factory with the faults during its convergence, the edit among them, and its result
/// compared. Fails naming what differs; cleans up either way.
pub async fn run(client: &Client, chaos: &Chaos) -> anyhow::Result<Report> {
    let run = unique_name("chaos");
    let namespace = format!("{run}-system");
    let scratch = crate::scratch_dir("chaos")?;
    let log = scratch.join("operator.log");
    eprintln!(
        "chaos: seed {} (repeat with {SEED_ENV}={}), {} Nodes, operator log {}",
        chaos.seed,
        chaos.seed,
        chaos.nodes,
        log.display()
    );
    crate::install_crds(client).await?;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    let result = trial(client, chaos, &run, &namespace, &log).await;
    finish(
        result,
        clean_up(client, &run, &namespace, &log).await,
        &scratch,
        &log,
    )
}

/// The trial's result, unless only the cleanup after it failed; the scratch folder (the
/// operators' log) is kept when anything failed.
fn finish<T>(
    result: anyhow::Result<T>,
    cleaned: anyhow::Result<()>,
    scratch: &Path,
    log: &Path,
) -> anyhow::Result<T> {
    match (result, cleaned) {
        (Ok(value), Ok(())) => {
            let _ = std::fs::remove_dir_all(scratch);
            Ok(value)
        }
        (Ok(_), Err(err)) => Err(err.context("cleaning up after the trial")),
        (Err(err), cleaned) => {
            if let Err(cleanup) = cleaned {
                eprintln!("chaos: cleaning up after the failed trial failed too: {cleanup:#}");
            }
            Err(err.context(format!("the operators' log is {}", log.display())))
        }
    }
}

/// Deletes a run's Factory (with an operator of its own to release the finalizer), its Nodes
/// and its namespace.
async fn clean_up(client: &Client, run: &str, namespace: &str, log: &Path) -> anyhow::Result<()> {
    let binary = operator_binary()?;
    let selector = format!("{RUN_LABEL}={run}");
    let args = operator_args(&selector, namespace);
    let cleaner = OperatorProcess::start(&binary, "chaos-cleanup", &args, log)?;
    let factories: Api<Factory> = Api::all(client.clone());
    let _ = factories.delete(run, &DeleteParams::default()).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while factories.get_opt(run).await.ok().flatten().is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cleaner.kill()?;
    delete_nodes(client, run).await?;
    Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::default())
        .await?;
    Ok(())
}

fn operator_args<'a>(selector: &'a str, namespace: &'a str) -> Vec<&'a str> {
    vec![
        "--factory-selector",
        selector,
        "--namespace",
        namespace,
        "--gpu-operator-namespace",
        namespace,
    ]
}

async fn trial(
    client: &Client,
    chaos: &Chaos,
    run: &str,
    namespace: &str,
    log: &Path,
) -> anyhow::Result<Report> {
    let binary = operator_binary()?;
    let selector = format!("{RUN_LABEL}={run}");
    let args = operator_args(&selector, namespace);
    let started = Instant::now();
    register_nodes(client, run, chaos.nodes).await?;
    eprintln!(
        "chaos: {} Nodes registered in {:.1} s",
        chaos.nodes,
        started.elapsed().as_secs_f64()
    );

    // 1. Undisturbed: the edited spec from the start; its result is what the faults must reach.
    let operator = OperatorProcess::start(&binary, "chaos-undisturbed", &args, log)?;
    apply_factory(client, &factory(run, chaos.nodes, true)).await?;
    let undisturbed = wait_converged(client, run, chaos.timeout).await?;
    let expected = snapshot(client, run, namespace).await?;
    let factories: Api<Factory> = Api::all(client.clone());
    factories.delete(run, &DeleteParams::default()).await?;
    let deadline = Instant::now() + chaos.timeout;
    while factories.get_opt(run).await?.is_some() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the undisturbed Factory was not released within {:?}",
            chaos.timeout
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    operator.kill()?;
    eprintln!(
        "chaos: undisturbed run converged in {:.1} s",
        undisturbed.as_secs_f64()
    );

    // 2. The same from the original spec, with the faults in a seeded order at seeded moments.
    let mut rng = fastrand::Rng::with_seed(chaos.seed);
    let mut faults = vec![Fault::Kill; chaos.kills];
    faults.extend([Fault::Edit, Fault::RestartApiServer, Fault::RestartEtcd]);
    rng.shuffle(&mut faults);
    let mut incarnation = 1;
    let start = |n: usize| OperatorProcess::start(&binary, &format!("chaos-{n}"), &args, log);
    let started = Instant::now();
    let mut operator = start(incarnation)?;
    apply_factory(client, &factory(run, chaos.nodes, false)).await?;
    let mut happened = Vec::new();
    let mut exits = 0;
    for fault in faults {
        let gap = rng.u64(0..=u64::try_from(chaos.max_gap.as_millis())?);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if let Some(status) = operator.exited()? {
            eprintln!(
                "chaos: operator {} ended on its own ({status}); starting it again",
                operator.identity
            );
            exits += 1;
            incarnation += 1;
            operator = start(incarnation)?;
        }
        let at = started.elapsed().as_secs_f64();
        eprintln!("chaos: {at:.1} s: {fault:?}");
        match fault {
            Fault::Kill => {
                operator.kill()?;
                incarnation += 1;
                operator = start(incarnation)?;
            }
            Fault::RestartApiServer => restart("kube-apiserver").await?,
            Fault::RestartEtcd => restart("etcd").await?,
            Fault::Edit => apply_factory(client, &factory(run, chaos.nodes, true)).await?,
        }
        happened.push((at, fault));
    }
    loop {
        if converged(client, run).await {
            break;
        }
        if let Some(status) = operator.exited()? {
            eprintln!(
                "chaos: operator {} ended on its own ({status}); starting it again",
                operator.identity
            );
            exits += 1;
            incarnation += 1;
            operator = start(incarnation)?;
        }
        anyhow::ensure!(
            started.elapsed() < chaos.timeout + Duration::from_secs(120),
            "the disturbed Factory did not converge (seed {}); see {}",
            chaos.seed,
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let disturbed = started.elapsed();
    eprintln!(
        "chaos: disturbed run converged in {:.1} s",
        disturbed.as_secs_f64()
    );

    // 3. Quiet once converged. The last writes of convergence (the Ready Event) may trail the status; steady state
    // starts after five seconds without any.
    let settle = Instant::now();
    let mut from = audit_end()?;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let writes = operator_writes(from)?;
        if writes.is_empty() {
            break;
        }
        anyhow::ensure!(
            settle.elapsed() < Duration::from_secs(60),
            "the operator kept writing for a minute after converging (seed {}): {:?}",
            chaos.seed,
            writes.iter().map(|w| &w.what).collect::<Vec<_>>()
        );
        from = audit_end()?;
    }
    let from = audit_end()?;
    let window = Timestamp::now();
    tokio::time::sleep(chaos.quiet).await;
    let steady = operator_writes(from)?;
    // A Node whose readiness changed (its simulated kubelet fell behind on a loaded machine)
    // changes the pools' counts: the status and its Event then rightly change too.
    let readiness_changes = readiness_changed_since(client, run, window).await?;
    let unexplained: Vec<&str> = steady
        .iter()
        .map(|w| w.what.as_str())
        .filter(|what| {
            readiness_changes == 0
                || !(what.starts_with("patch factories/status") || what.contains(" events "))
        })
        .collect();
    let mut failures = Vec::new();
    if !unexplained.is_empty() {
        failures.push(format!(
            "the operator wrote in steady state ({readiness_changes} Nodes changed readiness meanwhile): {unexplained:?}"
        ));
    }
    // 4. The same result as the undisturbed run, and nothing foreign lost.
    let actual = snapshot(client, run, namespace).await?;
    let differ = differences(&expected, &actual, 20);
    if !differ.is_empty() {
        failures.push(format!(
            "the result differs from the undisturbed run's:\n{}",
            differ.join("\n")
        ));
    }
    let lost = foreign_lost(client, run).await?;
    if !lost.is_empty() {
        failures.push(format!(
            "Nodes lost a label or taint fabbrica does not own: {lost:?}"
        ));
    }
    anyhow::ensure!(
        failures.is_empty(),
        "after the faults (seed {}): {}",
        chaos.seed,
        failures.join("; ")
    );
    operator.kill()?;
    Ok(Report {
        seed: chaos.seed,
        undisturbed,
        disturbed,
        faults: happened,
        exits,
        nodes: chaos.nodes,
        steady_writes: steady.len(),
        readiness_changes,
    })
}

/// What a failover measured.
#[derive(Clone, Debug)]
pub struct Failover {
    /// From the leader's SIGKILL until the standby holds the Lease.
    pub lease_taken: Duration,
    /// From the leader's SIGKILL until the standby has reconciled the edit made just after it.
    pub reconciled: Duration,
    /// Writes of the leader before it was killed, and of the standby after.
    pub writes: (usize, usize),
    /// From the leader's last write answered to the standby's first write received.
    pub gap: Duration,
}

/// Two replicas of the operator binary with `--leader-elect` over `nodes` Nodes: the first
/// leads and converges the Factory, the second stands by; the leader is killed with SIGKILL
/// and the Factory edited at once. Measures the takeover, and fails when the audit log shows
/// the two writing at once (the standby writing before the leader's last write was answered)
/// or either not writing at all. `hang_guard` bounds each wait.
pub async fn failover(
    client: &Client,
    nodes: usize,
    hang_guard: Duration,
) -> anyhow::Result<Failover> {
    let run = unique_name("failover");
    let namespace = format!("{run}-system");
    let scratch = crate::scratch_dir("failover")?;
    let log = scratch.join("operator.log");
    crate::install_crds(client).await?;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    let result = failover_trial(client, nodes, hang_guard, &run, &namespace, &log).await;
    finish(
        result,
        clean_up(client, &run, &namespace, &log).await,
        &scratch,
        &log,
    )
}

async fn lease_holder(client: &Client, namespace: &str) -> Option<(String, i32)> {
    let lease =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), namespace)
            .get_opt("fabbrica-operator")
            .await
            .ok()??;
    let spec = lease.spec?;
    Some((spec.holder_identity?, spec.lease_transitions.unwrap_or(0)))
}

async fn failover_trial(
    client: &Client,
    nodes: usize,
    hang_guard: Duration,
    run: &str,
    namespace: &str,
    log: &Path,
) -> anyhow::Result<Failover> {
    let binary = operator_binary()?;
    register_nodes(client, run, nodes).await?;
    let selector = format!("{RUN_LABEL}={run}");
    let mut args = operator_args(&selector, namespace);
    args.extend(["--leader-elect", "--lease-namespace", namespace]);
    let from = audit_end()?;
    let leader = OperatorProcess::start(&binary, "replica-a", &args, log)?;
    let waiting = Instant::now();
    while lease_holder(client, namespace).await.is_none() {
        anyhow::ensure!(waiting.elapsed() < hang_guard, "nobody took the Lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby = OperatorProcess::start(&binary, "replica-b", &args, log)?;
    apply_factory(client, &factory(run, nodes, false)).await?;
    wait_converged(client, run, hang_guard).await?;
    anyhow::ensure!(
        lease_holder(client, namespace).await == Some(("replica-a".to_owned(), 0)),
        "the first replica leads while it runs"
    );

    let killed = Instant::now();
    leader.kill()?;
    apply_factory(client, &factory(run, nodes, true)).await?;
    let mut lease_taken = None;
    let reconciled = loop {
        if lease_taken.is_none()
            && lease_holder(client, namespace)
                .await
                .is_some_and(|(h, _)| h == "replica-b")
        {
            lease_taken = Some(killed.elapsed());
        }
        if lease_taken.is_some() && converged(client, run).await {
            break killed.elapsed();
        }
        anyhow::ensure!(
            killed.elapsed() < hang_guard,
            "the standby did not take over and reconcile within {hang_guard:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    anyhow::ensure!(
        lease_holder(client, namespace).await == Some(("replica-b".to_owned(), 1)),
        "the standby holds the Lease after one transition"
    );
    // The standby's last reconcile may still be writing its Event; both are stopped before the
    // audit log is read, so that every write is in it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    standby.kill()?;
    let writes = operator_writes(from)?;
    let of = |identity: &str| -> Vec<&Write> {
        writes.iter().filter(|w| w.identity == identity).collect()
    };
    let (a, b) = (of("replica-a"), of("replica-b"));
    anyhow::ensure!(
        !a.is_empty(),
        "the leader wrote nothing before it was killed"
    );
    anyhow::ensure!(!b.is_empty(), "the standby wrote nothing after taking over");
    let a_last = a.iter().max_by_key(|w| w.answered).context("a write")?;
    let b_first = b.iter().min_by_key(|w| w.received).context("a write")?;
    anyhow::ensure!(
        a_last.answered < b_first.received,
        "two replicas wrote at once: replica-b sent {} at {} before replica-a's {} was answered at {}",
        b_first.what,
        b_first.received,
        a_last.what,
        a_last.answered
    );
    let gap = a_last.answered.duration_until(b_first.received);
    Ok(Failover {
        lease_taken: lease_taken.context("the Lease was taken")?,
        reconciled,
        writes: (a.len(), b.len()),
        gap: Duration::try_from(gap)?,
    })
}
