//! Operator at gigafactory scale, against the real control plane.
//!
//! Registers N Nodes (default 12,500: DGX B200 training nodes and a MIG-shared
//! DGX H200 pool, with GPU allocatable and scalable-unit labels), whose kubelets
//! are the benchmark's own ([`PacedKubelets`]): they report them Ready, then renew their
//! leases and report their status at the rates `tests/bench-operator` sets, paced
//! evenly. Measures those heartbeats alone, then
//! runs five times (`FABBRICA_BENCH_RUNS`): a plain loop of writes like the
//! operator's from one client, then the operator binary started with the Factory
//! declared, until every pool is ready (its peak RSS, API requests and writes),
//! each phase started once kwok's Node watch has held for 30 s (and its restarts
//! during the phase counted);
//! between runs the operator is stopped and its writes taken back. After the last
//! run it measures the steady state under heartbeats, as many windows of 600 s
//! (`FABBRICA_BENCH_STEADY_SECONDS`) as there were runs (`FABBRICA_BENCH_STEADY_RUNS`):
//! the operator's requests, writes and CPU in each; and at last, as many times, how
//! soon a Node going NotReady, losing a GPU or gaining the pool's label shows in the
//! Factory's status. Figures are printed as the median and each value. Run it
//! through `tests/bench-operator`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use fabbrica_crds::v1alpha1::{Factory, FactoryStatus, GpuSystem};
use fabbrica_tests::{
    KWOK_NODE_ANNOTATION, client, gpu_node, install_crds, kubeconfig_path, kubectl,
    register_ready_node, repo_root, site_labels,
};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const OPERATOR_USER: &str = "system:serviceaccount:fabbrica-system:fabbrica-operator";
const IN_FLIGHT: usize = 16;
const POOL_LABEL: &str = "bench.fabbrica.io/pool";

fn pools(nodes: usize) -> [(&'static str, &'static str, usize, u32); 2] {
    // A Gigafactory's proportions: most nodes train, one in 25 serves notebooks (MIG).
    let interactive = (nodes / 25).max(1);
    [
        ("train", "dgx-b200", nodes - interactive, 8),
        ("interactive", "dgx-h200", interactive, 56),
    ]
}

/// The Node that joins no pool until the latency probe labels it.
const SPARE: &str = "bench-spare";

/// The training Node the latency probe's round `round` makes NotReady.
fn probed(round: usize) -> String {
    format!("bench-train-{:05}", 101 * round + 7)
}

/// Registers the Nodes as the integration tests do ([`register_gpu_node`]: they carry a DGX's
/// CPU, memory and GPUs), 16 in flight, each reported Ready and its lease taken by its kubelet
/// ([`PacedKubelets`]) right after; the MIG-shared Nodes advertise their 56 MIG instances as the GPU
/// Operator's device plugin does. One spare training Node carries no pool label.
async fn register_nodes(
    client: &kube::Client,
    nodes: usize,
    kubelets: &PacedKubelets,
) -> anyhow::Result<Vec<String>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut specs: Vec<(String, Option<&str>, GpuSystem, u32, usize)> = pools(nodes)
        .into_iter()
        .flat_map(|(pool, system, count, gpus)| {
            let system = if system == "dgx-h200" {
                GpuSystem::DgxH200
            } else {
                GpuSystem::DgxB200
            };
            (0..count).map(move |i| (format!("bench-{pool}-{i:05}"), Some(pool), system, gpus, i))
        })
        .collect();
    specs.push((SPARE.to_owned(), None, GpuSystem::DgxB200, 8, 0));
    let names = specs.iter().map(|spec| spec.0.clone()).collect();
    let ttl = node_ttl(specs.len()).to_string();
    futures::stream::iter(specs)
        .map(|(name, pool, system, gpus, i)| {
            let api = api.clone();
            let ttl = ttl.clone();
            async move {
                let mut labels = site_labels(&name, i);
                labels.insert(
                    "topology.example.com/scalable-unit".to_owned(),
                    format!("su{:03}", i / 32),
                );
                if let Some(pool) = pool {
                    labels.insert(POOL_LABEL.to_owned(), pool.to_owned());
                }
                let mut node = gpu_node(&name, system, u32::try_from(i / 18)?, labels)?;
                let annotations = node.metadata.annotations.get_or_insert_default();
                annotations.insert(
                    KWOK_NODE_ANNOTATION.to_owned(),
                    PacedKubelets::ANNOTATION.to_owned(),
                );
                annotations.insert(TTL_ANNOTATION.to_owned(), ttl);
                register_ready_node(&api, &node, &gpus.to_string()).await?;
                kubelets.report(&name, true).await?;
                kubelets.take_lease(&name).await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(names)
}

/// The annotation kube-controller-manager's TTL controller keeps on every Node: how long kubelets
/// may cache Secrets and ConfigMaps, chosen by the cluster's size.
const TTL_ANNOTATION: &str = "node.alpha.kubernetes.io/ttl";

/// The TTL, in seconds, the TTL controller gives every Node of a cluster of `nodes` Nodes once
/// they have all joined (its boundaries, `pkg/controller/ttl` of Kubernetes). The benchmark
/// registers its Nodes with it: otherwise the controller annotates every Node once, at its
/// client's 20 writes a second (about 21 minutes at 25,000), beside the first runs' timed phases.
/// It still writes the first Nodes as the cluster grows through its smaller boundaries;
/// [`until_ttl_settled`] waits for that.
fn node_ttl(nodes: usize) -> u32 {
    match nodes {
        0..=100 => 0,
        101..=500 => 15,
        501..=1000 => 30,
        1001..=2000 => 60,
        _ => 300,
    }
}

/// Waits until every Node carries the TTL annotation at `ttl`: the TTL controller has done its
/// writes. Each check lists every Node, so it polls every 10 s, not at `eventually`'s 200 ms.
async fn until_ttl_settled(client: &kube::Client, ttl: u32) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let ttl = ttl.to_string();
    let started = Instant::now();
    loop {
        let pending = api
            .list_metadata(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|node| {
                node.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(TTL_ANNOTATION))
                    != Some(&ttl)
            })
            .count();
        if pending == 0 {
            eprintln!(
                "the TTL controller's annotations settled in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "{pending} Nodes still lack the TTL annotation {TTL_ANNOTATION}={ttl} after an hour"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// The kubelets of the benchmark's Nodes. A kubelet renews its Node's lease and reports its
/// Node's status on timers of its own, started when its machine booted, so a site's kubelets
/// together write at an even rate; these do the same, each kind of write paced evenly over its
/// interval (every Node once per interval, in turn), so that every timed phase runs beside the
/// same load. A status report renews the heartbeat time of the four conditions a kubelet
/// reports and changes nothing else, as an unchanged kubelet's report does. kwok, the control
/// plane's simulated kubelet, could not give that: one kwok playing 25,000 Nodes reports in the
/// waves in which they were registered, and under an even stream its Node watch, once closed by
/// the API server, never caught up again (see docs/BENCHMARKS.md).
struct PacedKubelets {
    nodes: Api<Node>,
    leases: Api<Lease>,
    lease_seconds: i32,
    /// Status reports and lease renewals the API server answered so far.
    reports: AtomicUsize,
    renewals: AtomicUsize,
    failures: AtomicUsize,
    /// The resourceVersion of each Node's lease as last written: a kubelet updates the lease it
    /// holds.
    lease_versions: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl PacedKubelets {
    /// The value of kwok's annotation on these Nodes: not kwok's, so kwok leaves them alone.
    const ANNOTATION: &str = "scale-bench";
    /// The conditions a kubelet reports.
    const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

    /// Reports `name` Ready or NotReady, as a kubelet does when the state changes: every
    /// condition, from now.
    async fn report(&self, name: &str, ready: bool) -> anyhow::Result<()> {
        let now = Timestamp::now().to_string();
        let (status, reason) = if ready {
            ("True", "KubeletReady")
        } else {
            ("False", "KubeletNotReady")
        };
        let mut conditions = vec![json!({"type": "Ready", "status": status, "reason": reason,
            "message": format!("reported by the benchmark: {reason}"),
            "lastHeartbeatTime": now, "lastTransitionTime": now})];
        for pressure in &Self::CONDITIONS[1..] {
            conditions.push(json!({"type": pressure, "status": "False",
                "reason": format!("KubeletHasNo{pressure}"),
                "lastHeartbeatTime": now, "lastTransitionTime": now}));
        }
        let patch = json!({"status": {"conditions": conditions}});
        self.nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        Ok(())
    }

    /// The periodic report of a Node whose state did not change: only the heartbeat times. A
    /// strategic merge patch merges conditions by type, so a Node the probe made NotReady stays so.
    async fn heartbeat(&self, name: &str) -> anyhow::Result<()> {
        let now = Timestamp::now().to_string();
        let conditions: Vec<Value> = Self::CONDITIONS
            .iter()
            .map(|kind| json!({"type": kind, "lastHeartbeatTime": now}))
            .collect();
        let patch = json!({"status": {"conditions": conditions}});
        self.nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        self.reports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes `name`'s lease, as a kubelet does when it starts.
    async fn take_lease(&self, name: &str) -> anyhow::Result<()> {
        let taken = self
            .leases
            .patch(
                name,
                &PatchParams::apply("scale-bench-kubelet").force(),
                &Patch::Apply(&self.lease(name, None)),
            )
            .await?;
        self.remember(name, taken);
        Ok(())
    }

    /// Renews `name`'s lease as a kubelet does: an update of the lease it last wrote.
    async fn renew(&self, name: &str) -> anyhow::Result<()> {
        let version = self
            .lease_versions
            .lock()
            .expect("not poisoned")
            .get(name)
            .cloned();
        let renewed = self
            .leases
            .replace(name, &PostParams::default(), &self.lease(name, version))
            .await?;
        self.remember(name, renewed);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn remember(&self, name: &str, lease: Lease) {
        if let Some(version) = lease.metadata.resource_version {
            self.lease_versions
                .lock()
                .expect("not poisoned")
                .insert(name.to_owned(), version);
        }
    }

    /// `name`'s lease, renewed now, as an update of `version`.
    fn lease(&self, name: &str, version: Option<String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                resource_version: version,
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.to_owned()),
                lease_duration_seconds: Some(self.lease_seconds),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Starts the heartbeats of `names` for as long as the benchmark runs: each Node's status
    /// reported every `status_every` and its lease renewed every `renew_every` (a kubelet renews
    /// every quarter of the lease's duration).
    fn start(self: &Arc<Self>, names: Vec<String>, status_every: Duration, renew_every: Duration) {
        let names = Arc::new(names);
        for (every, is_lease) in [(status_every, false), (renew_every, true)] {
            let kubelets = Arc::clone(self);
            let names = Arc::clone(&names);
            tokio::spawn(async move { kubelets.pace(&names, every, is_lease).await });
        }
    }

    /// Writes for every Node in turn, one each `every / names.len()`, at most [`IN_FLIGHT`] at
    /// once; a write the API server has not answered in time delays the next ones, and the
    /// rate each phase got is counted, not assumed.
    async fn pace(self: Arc<Self>, names: &[String], every: Duration, is_lease: bool) {
        let step = every.div_f64(names.len().max(1) as f64);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut due = tokio::time::Instant::now() + step;
        for name in names.iter().cycle() {
            tokio::time::sleep_until(due).await;
            due += step;
            let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                return;
            };
            let kubelets = Arc::clone(&self);
            let name = name.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let written = if is_lease {
                    kubelets.renew(&name).await
                } else {
                    kubelets.heartbeat(&name).await
                };
                // Failures say the server is overloaded; the first few are shown.
                if let Err(error) = written
                    && kubelets.failures.fetch_add(1, Ordering::Relaxed) < 3
                {
                    eprintln!("a simulated kubelet's write failed: {error:#}");
                }
            });
        }
    }

    /// Status reports and lease renewals so far.
    fn written(&self) -> (usize, usize) {
        (
            self.reports.load(Ordering::Relaxed),
            self.renewals.load(Ordering::Relaxed),
        )
    }

    /// Status reports and lease renewals a second since `before` (from [`Self::written`]),
    /// `elapsed` ago.
    fn rates_since(&self, before: (usize, usize), elapsed: Duration) -> (f64, f64) {
        let (reports, renewals) = self.written();
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        (
            (reports - before.0) as f64 / seconds,
            (renewals - before.1) as f64 / seconds,
        )
    }
}

/// Node status writes and lease writes the API server has answered so far, from its
/// `apiserver_request_total` (every client: here the simulated kubelets do nearly all).
fn heartbeat_writes() -> anyhow::Result<(f64, f64)> {
    let metrics = kubectl(&["get", "--raw", "/metrics"])?;
    let (mut status, mut leases) = (0.0, 0.0);
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let write = ["PATCH", "PUT", "APPLY"]
            .iter()
            .any(|verb| labels.contains(&format!("verb=\"{verb}\"")));
        if !write {
            continue;
        }
        if labels.contains("resource=\"nodes\"") && labels.contains("subresource=\"status\"") {
            status += value;
        } else if labels.contains("resource=\"leases\"") {
            leases += value;
        }
    }
    Ok((status, leases))
}

/// The machine's load average over 1, 5 and 15 minutes.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The field manager of the plain loop.
const BASELINE_MANAGER: &str = "fabbrica-bench-baseline";

/// The operator's field manager (`fabbrica_operator::FIELD_MANAGER`).
const OPERATOR_MANAGER: &str = "fabbrica-operator";

/// The writes the operator makes, from one client, 16 in flight: per Node one server-side apply of
/// as many labels as a pool member of the benchmark's Factory gets (11: its Factory, pool, device
/// plugin and MIG configuration, rails, scalable unit and leaf group, and the four topology labels
/// of Topograph and of NVIDIA's network topology, which these Nodes do not carry), an annotation
/// and a one-taint `spec.taints`, under other keys so that the operator's own writes still change
/// every Node.
fn baseline_write(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "bench.fabbrica.io/baseline-factory": "bench", "bench.fabbrica.io/baseline-pool": "train",
            "bench.fabbrica.io/baseline-device-plugin": "train", "bench.fabbrica.io/baseline-mig": "all-disabled",
            "bench.fabbrica.io/baseline-rails": "8", "bench.fabbrica.io/baseline-su": "su001",
            "bench.fabbrica.io/baseline-leaf": "su001-leaf0",
            "bench.fabbrica.io/baseline-tier-0": "su001-leaf0", "bench.fabbrica.io/baseline-tier-1": "su001",
            "bench.fabbrica.io/baseline-topology-leaf": "su001-leaf0",
            "bench.fabbrica.io/baseline-topology-spine": "su001",
        }, "annotations": {"bench.fabbrica.io/baseline-taints": "bench.fabbrica.io/baseline=present:NoSchedule"}},
        "spec": {"taints": [{"key": "bench.fabbrica.io/baseline", "value": "present", "effect": "NoSchedule"}]},
    })
}

/// An apply of nothing under the same manager: takes back everything [`baseline_write`] set, so the
/// operator finds the Nodes as registered, no larger than the plain loop found them.
fn baseline_undo(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

/// Applies `body` to every bench Node from one client, 16 in flight; the count and the time taken.
async fn plain_patch_loop(
    client: &kube::Client,
    body: fn(&str) -> Value,
) -> anyhow::Result<(usize, Duration)> {
    plain_patch_loop_as(client, body, BASELINE_MANAGER, false).await
}

/// Applies `body` under `manager` to every bench Node (the spare too, if `spare`), 16 in flight.
async fn plain_patch_loop_as(
    client: &kube::Client,
    body: fn(&str) -> Value,
    manager: &str,
    spare: bool,
) -> anyhow::Result<(usize, Duration)> {
    let api: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = api
        .list_metadata(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .filter(|n| n.starts_with("bench-") && (spare || n != SPARE))
        .collect();
    let started = Instant::now();
    // Forced, as the operator's are: the node lifecycle controller owns `spec.taints` of a
    // Node it found NotReady before kwok reported it.
    let params = PatchParams::apply(manager).force();
    futures::stream::iter(names.iter())
        .map(|name| {
            let api = api.clone();
            let params = params.clone();
            async move {
                let patch = body(name);
                api.patch(name, &params, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    Ok((names.len(), started.elapsed()))
}

fn factory(nodes: usize) -> Value {
    let pools: Vec<Value> = pools(nodes)
        .into_iter()
        .map(|(pool, system, count, _)| {
            let mut p = json!({"name": pool, "nodeSelector": {"bench.fabbrica.io/pool": pool}, "system": system,
                "expectedNodes": count, "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]});
            if pool == "interactive" {
                p["sharing"] = json!({"mig": {"profile": "1g.18gb"}});
            }
            p
        })
        .collect();
    json!({"apiVersion": "fabbrica.io/v1alpha1", "kind": "Factory", "metadata": {"name": "bench"}, "spec": {
        "site": {"name": "bench", "country": "DE", "tier": "gigafactory"},
        "gpuPools": pools,
        "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G", "topology": {
            "source": "nodeLabels", "scalableUnitLabel": "topology.example.com/scalable-unit"}},
        "storageTiers": [
            {"name": "scratch", "role": "scratch", "provisioner": "csi.example.com", "capacity": "40Pi"},
            {"name": "project", "role": "project", "provisioner": "csi.example.com", "capacity": "200Pi"},
            {"name": "datasets", "role": "datasets", "provisioner": "csi.example.com", "capacity": "100Pi"}]
    }})
}

/// What the operator's identity did in the audit log since a byte offset.
struct AuditCounts {
    requests: usize,
    /// Each write as `verb resource/name`.
    writes: Vec<String>,
}

/// Requests and writes by the operator's identity in a stretch of the audit log.
fn audit_counts(text: &str) -> AuditCounts {
    let mut counts = AuditCounts {
        requests: 0,
        writes: Vec::new(),
    };
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["user"]["username"] != OPERATOR_USER || event["stage"] != "ResponseComplete" {
            continue;
        }
        let object = &event["objectRef"];
        // Lease renewals are leader election's heartbeat, not reconciliation.
        if object["resource"] == "leases" {
            continue;
        }
        counts.requests += 1;
        let verb = event["verb"].as_str().unwrap_or_default();
        if matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) {
            let resource = object["resource"].as_str().unwrap_or_default();
            let name = object["name"].as_str().unwrap_or_default();
            counts.writes.push(format!("{verb} {resource}/{name}"));
        }
    }
    counts
}

/// The audit log's text since `from` (a byte offset), and where it ended.
fn audit_since(audit: &Path, from: u64) -> anyhow::Result<(String, u64)> {
    let mut file = std::fs::File::open(audit)?;
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok((text, end))
}

/// Where the audit log ends now: the offset to count from.
fn audit_end(audit: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(audit)?.len())
}

/// What kwok did in a stretch of the audit log.
#[derive(Debug, Default)]
struct KwokActivity {
    /// How many times kwok started its Node watch. kwok watches from resourceVersion 0, so each
    /// start has the API server send it every Node again; when its watch cannot keep up, the API
    /// server closes it, and under a stream of writes one restart can follow another for minutes,
    /// slowing every write on the server.
    watches: usize,
}

fn kwok_activity(text: &str) -> KwokActivity {
    let mut activity = KwokActivity::default();
    for event in text
        .lines()
        .filter(|line| line.contains("\"kwok/") && line.contains("\"resource\":\"nodes\""))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
    {
        if event["stage"] == "ResponseStarted" && event["verb"] == "watch" {
            activity.watches += 1;
        }
    }
    activity
}

/// Waits until kwok's Node watch has held for [`CALM`], so that each timed phase starts as calm as
/// the one it is compared with (restarts left over from the phase before slowed whichever came
/// next); at most 15 minutes.
async fn until_kwok_watch_holds(audit: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut offset = audit_end(audit)?;
    loop {
        tokio::time::sleep(CALM).await;
        let (text, end) = audit_since(audit, offset)?;
        let restarts = kwok_activity(&text).watches;
        offset = end;
        if restarts == 0 {
            break;
        }
        eprintln!(
            "kwok restarted its Node watch {restarts} times in {CALM:?}; waiting for it to hold"
        );
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "kwok's Node watch did not hold for {CALM:?} within 15 minutes"
        );
    }
    Ok(())
}

/// How long kwok's Node watch must hold before a timed phase.
const CALM: Duration = Duration::from_secs(30);

/// CPU time (user and system, all threads) a process has used, in seconds. `/proc/PID/stat`
/// counts it in USER_HZ ticks, 100 a second on Linux.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds used so far by the control plane's API server and etcd together.
fn control_plane_cpu(state: &Path) -> f64 {
    services_cpu(state, &["kube-apiserver", "etcd"])
}

/// CPU seconds used so far by the named services of the control plane together.
fn services_cpu(state: &Path, names: &[&str]) -> f64 {
    names
        .iter()
        .filter_map(|name| std::fs::read_to_string(state.join(format!("{name}.pid"))).ok())
        .filter_map(|pid| cpu_seconds(pid.trim().parse().ok()?))
        .sum()
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Seconds from an environment variable, or `default`.
fn seconds_from_env(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A count from an environment variable (at least 1), or `default`.
fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// Polls the Factory's status every 20 ms until `shows` holds of it; the time since `since`.
async fn shown_after(
    factories: &Api<Factory>,
    since: Instant,
    shows: impl Fn(&FactoryStatus) -> bool,
) -> anyhow::Result<Duration> {
    loop {
        if factories
            .get("bench")
            .await?
            .status
            .as_ref()
            .is_some_and(&shows)
        {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(120),
            "the Factory's status did not show the change within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The training pool's (matched Nodes, ready Nodes, ready GPUs).
fn train(status: &FactoryStatus) -> (u32, u32, u64) {
    status
        .pools
        .iter()
        .find(|p| p.name == "train")
        .map_or((0, 0, 0), |p| {
            (p.nodes_matched, p.nodes_ready, p.gpus_ready.unwrap_or(0))
        })
}

/// How long, in ms, until each of three changes of a Node shows in the Factory's status (and
/// until its undoing does), `rounds` times each, each timed from its write: a Node reported
/// NotReady by its kubelet ([`PacedKubelets`]), losing a GPU from its allocatable resources
/// and a spare Node gaining the pool's label.
async fn latencies(
    client: &kube::Client,
    factories: &Api<Factory>,
    kubelets: &PacedKubelets,
    rounds: usize,
) -> anyhow::Result<Vec<(&'static str, Vec<u128>)>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let before = factories.get("bench").await?.status.context("a status")?;
    let (matched, ready, gpus) = train(&before);
    let label = |key: &str, value: Option<&str>| json!({"metadata": {"labels": {key: value}}});
    let merge = PatchParams::default();
    let mut probes = vec![
        ("Node NotReady", Vec::new()),
        ("Node Ready again", Vec::new()),
        ("Node loses a GPU", Vec::new()),
        ("Node gets it back", Vec::new()),
        ("Node gains the pool's label", Vec::new()),
        ("Node loses it", Vec::new()),
    ];
    for round in 0..rounds {
        let name = probed(round);
        for (i, (is_ready, expected)) in [(false, ready - 1), (true, ready)].into_iter().enumerate()
        {
            let since = Instant::now();
            kubelets.report(&name, is_ready).await?;
            let shown = shown_after(factories, since, |s| train(s).1 == expected).await?;
            probes[i].1.push(shown.as_millis());
        }

        for (i, (left, expected)) in [(7, gpus - 1), (8, gpus)].into_iter().enumerate() {
            let since = Instant::now();
            let status = json!({"status": {"allocatable": {"nvidia.com/gpu": left.to_string()}}});
            nodes
                .patch_status(&name, &merge, &Patch::Merge(&status))
                .await?;
            let shown = shown_after(factories, since, |s| train(s).2 == expected).await?;
            probes[2 + i].1.push(shown.as_millis());
        }

        for (i, (value, expected)) in [(Some("train"), matched + 1), (None, matched)]
            .into_iter()
            .enumerate()
        {
            let since = Instant::now();
            nodes
                .patch(SPARE, &merge, &Patch::Merge(label(POOL_LABEL, value)))
                .await?;
            let shown = shown_after(factories, since, |s| train(s).0 == expected).await?;
            probes[4 + i].1.push(shown.as_millis());
        }
    }
    Ok(probes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(12_500);
    let operator_bin: PathBuf = std::env::args()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/dist/fabbrica-operator"));
    let steady_for =
        Duration::from_secs_f64(seconds_from_env("FABBRICA_BENCH_STEADY_SECONDS", 600.0));
    // The simulated kubelets' settings; the lease duration is the one `tests/control-plane` gave
    // the node lifecycle controller.
    let lease_seconds = seconds_from_env("FABBRICA_KWOK_LEASE_SECONDS", 40.0);
    let lease_renewal = lease_seconds / 4.0;
    let status_every = seconds_from_env("FABBRICA_KWOK_STATUS_SECONDS", 600.0);
    let mut loads = vec![("start".to_owned(), load_average())];
    let state = kubeconfig_path()
        .parent()
        .context("kubeconfig has a folder")?
        .to_path_buf();
    let audit = state.join("audit.log");
    let client = client().await?;
    install_crds(&client).await?;
    let _ = kubectl(&["create", "namespace", "fabbrica-system"]);
    let _ = kubectl(&["create", "namespace", "gpu-operator"]);
    // The benchmark measures speed, not permissions: the operator's identity gets cluster-admin.
    let _ = kubectl(&[
        "create",
        "clusterrolebinding",
        "fabbrica-bench-operator",
        "--clusterrole=cluster-admin",
        "--serviceaccount=fabbrica-system:fabbrica-operator",
    ]);

    let runs = count_from_env("FABBRICA_BENCH_RUNS", 5);
    let steady_runs = count_from_env("FABBRICA_BENCH_STEADY_RUNS", runs);
    eprintln!("registering {nodes} nodes ...");
    let started = Instant::now();
    let kubelets = Arc::new(PacedKubelets {
        nodes: Api::all(client.clone()),
        leases: Api::namespaced(client.clone(), "kube-node-lease"),
        #[allow(clippy::cast_possible_truncation)]
        lease_seconds: lease_seconds as i32,
        reports: AtomicUsize::new(0),
        renewals: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
        lease_versions: std::sync::Mutex::default(),
    });
    let names = register_nodes(&client, nodes, &kubelets).await?;
    eprintln!(
        "registered and reported Ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ttl = node_ttl(names.len());
    kubelets.start(
        names,
        Duration::from_secs_f64(status_every),
        Duration::from_secs_f64(lease_renewal),
    );
    // The heartbeats alone, once they have run for a while.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let alone_rates = Heartbeats::over(Duration::from_secs(30)).await?.rates();
    eprintln!(
        "heartbeats alone: {:.0} Node status writes/s, {:.0} lease writes/s",
        alone_rates.0, alone_rates.1
    );
    until_ttl_settled(&client, ttl).await?;

    let factories: Api<Factory> = Api::all(client.clone());
    let mut results = Vec::new();
    let mut operator = None;
    for run in 1..=runs {
        loads.push((format!("run {run}"), load_average()));
        let (result, child) =
            converge_once(&client, &state, &audit, &operator_bin, nodes, &kubelets).await?;
        eprintln!(
            "run {run} of {runs}: plain loop {:.1} s, operator {:.1} s, ratio {:.2}, peak RSS {}, kwok Node watch restarts {} / {}",
            result.plain.as_secs_f64(),
            result.converged.as_secs_f64(),
            result.ratio(),
            result.rss.map_or("n/a".into(), |m| format!("{m:.0} MiB")),
            result.plain_kwok_restarts,
            result.kwok_restarts,
        );
        results.push(result);
        if run == runs {
            operator = Some(child);
        } else {
            stop(child, &state)?;
            take_back_operator_writes(&client, &factories).await?;
        }
    }
    let operator = operator.context("at least one run")?;
    let mut steady = Vec::new();
    for window in 1..=steady_runs {
        eprintln!(
            "steady state {window} of {steady_runs} for {:.0} s ...",
            steady_for.as_secs_f64()
        );
        loads.push((format!("steady state {window}"), load_average()));
        let measured = steady_once(&audit, operator.id(), steady_for).await?;
        for write in &measured.writes {
            eprintln!("write in steady state: {write}");
        }
        eprintln!(
            "steady state {window}: {} writes, {:.2} % of a core, {:.1} ms per 1,000 Node updates",
            measured.writes.len(),
            measured.core_percent(),
            measured.ms_per_thousand()
        );
        steady.push(measured);
    }
    loads.push(("end of steady state".into(), load_average()));
    eprintln!("probing how soon Node changes show in the status ...");
    let probes = latencies(&client, &factories, &kubelets, steady_runs).await?;
    let rss_at_end = peak_rss_mib(operator.id());
    stop(operator, &state)?;

    let median_of = |f: &dyn Fn(&Converged) -> f64| median(results.iter().map(f).collect());
    // Runs are joined with "; ", as a figure of one run may be a pair joined with " / ".
    let each =
        |f: &dyn Fn(&Converged) -> String| results.iter().map(f).collect::<Vec<_>>().join("; ");
    println!("| figure | median of {runs} | each run |");
    println!("|---|---|---|");
    println!("| nodes | {nodes} (and one spare) | |");
    println!(
        "| simulated kubelets: lease renewed / Node status reported, each Node | every {lease_renewal:.0} s / every {status_every:.0} s | |"
    );
    println!(
        "| heartbeats alone: Node status writes / lease writes | {:.0}/s / {:.0}/s | |",
        alone_rates.0, alone_rates.1
    );
    println!(
        "| plain loop of the same writes, one client, {IN_FLIGHT} in flight | {:.1} s | {} |",
        median_of(&|r| r.plain.as_secs_f64()),
        each(&|r| format!("{:.1}", r.plain.as_secs_f64()))
    );
    println!(
        "| operator: start to every pool ready | {:.1} s | {} |",
        median_of(&|r| r.converged.as_secs_f64()),
        each(&|r| format!("{:.1}", r.converged.as_secs_f64()))
    );
    println!(
        "| ratio to the plain loop of the same run | {:.2} | {} |",
        median_of(&|r| r.ratio()),
        each(&|r| format!("{:.2}", r.ratio()))
    );
    println!(
        "| kwok's Node watch restarted: plain loop / operator to ready | {:.0} / {:.0} | {} |",
        median_of(&|r| r.plain_kwok_restarts as f64),
        median_of(&|r| r.kwok_restarts as f64),
        each(&|r| format!("{} / {}", r.plain_kwok_restarts, r.kwok_restarts))
    );
    println!(
        "| simulated kubelets' status reports / lease renewals: plain loop; operator to ready | {:.0}/s / {:.0}/s; {:.0}/s / {:.0}/s | {} |",
        median_of(&|r| r.plain_heartbeats.0),
        median_of(&|r| r.plain_heartbeats.1),
        median_of(&|r| r.heartbeats.0),
        median_of(&|r| r.heartbeats.1),
        each(&|r| format!(
            "{:.0} / {:.0}, {:.0} / {:.0}",
            r.plain_heartbeats.0, r.plain_heartbeats.1, r.heartbeats.0, r.heartbeats.1
        ))
    );
    println!(
        "| operator peak RSS at convergence | {:.0} MiB | {} |",
        median_of(&|r| r.rss.unwrap_or(f64::NAN)),
        each(&|r| r.rss.map_or("n/a".into(), |m| format!("{m:.0}")))
    );
    println!(
        "| operator peak RSS, whole last run (steady state and probes included) | {} | |",
        rss_at_end.map_or("n/a".into(), |m| format!("{m:.0} MiB"))
    );
    println!(
        "| CPU of API server and etcd: plain loop / operator to ready | {:.1} s / {:.1} s | {} |",
        median_of(&|r| r.plain_server_cpu),
        median_of(&|r| r.server_cpu),
        each(&|r| format!("{:.1} / {:.1}", r.plain_server_cpu, r.server_cpu))
    );
    println!(
        "| operator CPU, start to ready | {:.1} s | {} |",
        median_of(&|r| r.operator_cpu.unwrap_or(f64::NAN)),
        each(&|r| r.operator_cpu.map_or("n/a".into(), |s| format!("{s:.1}")))
    );
    println!(
        "| operator: list of the Nodes / pass of Node writes (its log) | {:.1} s / {:.1} s | {} |",
        median_of(&|r| r.stages.list.unwrap_or(f64::NAN)),
        median_of(&|r| r.stages.pass.unwrap_or(f64::NAN)),
        each(&|r| format!(
            "{} / {}",
            seconds_or_na(r.stages.list),
            seconds_or_na(r.stages.pass)
        ))
    );
    println!(
        "| API requests / writes during convergence | {:.0} / {:.0} | {} |",
        median_of(&|r| r.requests as f64),
        median_of(&|r| r.writes as f64),
        each(&|r| format!("{} / {}", r.requests, r.writes))
    );
    let steady_median = |f: &dyn Fn(&Steady) -> f64| median(steady.iter().map(f).collect());
    let steady_each =
        |f: &dyn Fn(&Steady) -> String| steady.iter().map(f).collect::<Vec<_>>().join("; ");
    println!(
        "| steady state ({steady_runs} windows of {:.0} s): Node status writes / lease writes | {:.0}/s / {:.0}/s | {} |",
        steady_for.as_secs_f64(),
        steady_median(&|w| w.heartbeats.rates().0),
        steady_median(&|w| w.heartbeats.rates().1),
        steady_each(&|w| {
            let (status, leases) = w.heartbeats.rates();
            format!("{status:.0} / {leases:.0}")
        })
    );
    println!(
        "| steady state: operator API requests / writes | {:.0} / {:.0} | {} |",
        steady_median(&|w| w.requests as f64),
        steady_median(&|w| w.writes.len() as f64),
        steady_each(&|w| format!("{} / {}", w.requests, w.writes.len()))
    );
    println!(
        "| steady state: operator CPU, % of a core | {:.2} % | {} |",
        steady_median(&Steady::core_percent),
        steady_each(&|w| format!("{:.2}", w.core_percent()))
    );
    println!(
        "| steady state: operator CPU per 1,000 Node updates | {:.1} ms | {} |",
        steady_median(&Steady::ms_per_thousand),
        steady_each(&|w| format!("{:.1}", w.ms_per_thousand()))
    );
    for (change, ms) in &probes {
        let all: Vec<String> = ms.iter().map(u128::to_string).collect();
        let ms = median(ms.iter().map(|&m| m as f64).collect());
        println!(
            "| {change}, until the status shows it | {ms:.0} ms | {} ms |",
            all.join("; ")
        );
    }
    let loads: Vec<String> = loads.iter().map(|(at, l)| format!("{at} {l}")).collect();
    println!("| load average (1, 5, 15 min) | {} | |", loads.join("; "));
    Ok(())
}

/// The median; NaN for no values.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// The Node status and lease writes the API server answered over a window.
struct Heartbeats {
    seconds: f64,
    node_updates: f64,
    lease_updates: f64,
}

impl Heartbeats {
    /// Counts them over the next `length`.
    async fn over(length: Duration) -> anyhow::Result<Self> {
        let (status_before, leases_before) = heartbeat_writes()?;
        let window = Instant::now();
        tokio::time::sleep(length).await;
        let (status_after, leases_after) = heartbeat_writes()?;
        Ok(Heartbeats {
            seconds: window.elapsed().as_secs_f64(),
            node_updates: status_after - status_before,
            lease_updates: leases_after - leases_before,
        })
    }

    /// Node status writes and lease writes a second.
    fn rates(&self) -> (f64, f64) {
        (
            self.node_updates / self.seconds,
            self.lease_updates / self.seconds,
        )
    }
}

/// One window of the steady state: heartbeats only, the operator left running.
struct Steady {
    heartbeats: Heartbeats,
    /// The operator's CPU seconds.
    cpu: f64,
    requests: usize,
    writes: Vec<String>,
}

impl Steady {
    fn core_percent(&self) -> f64 {
        100.0 * self.cpu / self.heartbeats.seconds
    }

    fn ms_per_thousand(&self) -> f64 {
        1000.0 * self.cpu / (self.heartbeats.node_updates / 1000.0).max(f64::MIN_POSITIVE)
    }
}

/// Measures `length` of steady state: the heartbeats, the operator's CPU and its requests.
async fn steady_once(audit: &Path, operator: u32, length: Duration) -> anyhow::Result<Steady> {
    let audit_from = audit_end(audit)?;
    let cpu_before = cpu_seconds(operator).unwrap_or_default();
    let heartbeats = Heartbeats::over(length).await?;
    let cpu = cpu_seconds(operator).unwrap_or_default() - cpu_before;
    let counts = audit_counts(&audit_since(audit, audit_from)?.0);
    Ok(Steady {
        heartbeats,
        cpu,
        requests: counts.requests,
        writes: counts.writes,
    })
}

/// One run: the plain loop, then the operator from its start to every pool ready.
struct Converged {
    plain: Duration,
    converged: Duration,
    /// The operator's peak RSS when the status first showed every pool ready.
    rss: Option<f64>,
    plain_server_cpu: f64,
    server_cpu: f64,
    operator_cpu: Option<f64>,
    /// From the operator's log: its list of the Nodes and its pass of Node writes, in seconds.
    stages: OperatorStages,
    requests: usize,
    writes: usize,
    /// kwok's Node watch restarts during the plain loop and during the operator's convergence.
    plain_kwok_restarts: usize,
    kwok_restarts: usize,
    /// The simulated kubelets' status reports and lease renewals a second during the plain
    /// loop and during convergence.
    plain_heartbeats: (f64, f64),
    heartbeats: (f64, f64),
}

impl Converged {
    fn ratio(&self) -> f64 {
        self.converged.as_secs_f64() / self.plain.as_secs_f64()
    }
}

/// Times the plain loop (and takes its writes back), then starts the operator with the Factory
/// declared and waits until its status shows every pool ready and the operator's Ready Event is
/// out. The operator is left running.
async fn converge_once(
    client: &kube::Client,
    state: &Path,
    audit: &Path,
    operator_bin: &Path,
    nodes: usize,
    kubelets: &PacedKubelets,
) -> anyhow::Result<(Converged, std::process::Child)> {
    until_kwok_watch_holds(audit).await?;
    let kwok_offset = audit_end(audit)?;
    let written = kubelets.written();
    let cpu_before = control_plane_cpu(state);
    let kwok_before = services_cpu(state, &["kwok"]);
    let (patched, plain) = plain_patch_loop(client, baseline_write).await?;
    let plain_server_cpu = control_plane_cpu(state) - cpu_before;
    let plain_kwok_cpu = services_cpu(state, &["kwok"]) - kwok_before;
    let plain_kwok = kwok_activity(&audit_since(audit, kwok_offset)?.0);
    let plain_kwok_restarts = plain_kwok.watches;
    let plain_heartbeats = kubelets.rates_since(written, plain);
    eprintln!(
        "plain loop: {patched} node writes in {:.1} s; kwok used {plain_kwok_cpu:.1} s of CPU \
         and restarted its Node watch {plain_kwok_restarts} times; Node status reports {:.0}/s, \
         lease renewals {:.0}/s",
        plain.as_secs_f64(),
        plain_heartbeats.0,
        plain_heartbeats.1
    );
    let (_, undone) = plain_patch_loop(client, baseline_undo).await?;
    eprintln!(
        "plain loop's writes taken back in {:.1} s",
        undone.as_secs_f64()
    );

    let mut spec = factory(nodes);
    spec["metadata"]["labels"] = json!({"bench.fabbrica.io/run": "bench"});
    let factories: Api<Factory> = Api::all(client.clone());
    factories
        .patch(
            "bench",
            &PatchParams::apply("fabbrica-bench").force(),
            &Patch::Apply(&spec),
        )
        .await?;
    until_kwok_watch_holds(audit).await?;
    let offset = audit_end(audit)?;
    let cpu_before = control_plane_cpu(state);
    let kwok_before = services_cpu(state, &["kwok"]);
    let written = kubelets.written();
    let started = Instant::now();
    let mut operator = Command::new(operator_bin)
        .args([
            "--kubeconfig",
            state.join("operator.kubeconfig").to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--factory-selector", "bench.fabbrica.io/run=bench"])
        // Anything after the binary goes to the operator, e.g. `--node-concurrency 32`.
        .args(std::env::args().skip(3))
        .env_remove("KUBECONFIG")
        .env("FABBRICA_LOG_FORMAT", "json")
        // A heap profile (the `dhat-heap` feature) is written here.
        .current_dir(state)
        .stdout(std::fs::File::create(state.join("bench-operator.log"))?)
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with cargo build --release -p fabbrica-operator)",
                operator_bin.display()
            )
        })?;
    let converged = loop {
        if let Some(status) = factories.get("bench").await?.status {
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "PoolsReady" && c.status == "True");
            let pools_full = status.pools.len() == 2
                && status
                    .pools
                    .iter()
                    .all(|p| p.nodes_ready == p.nodes_expected);
            if ready && pools_full && status.gpus_ready == status.gpus_expected {
                break started.elapsed();
            }
        }
        if let Some(code) = operator.try_wait()? {
            anyhow::bail!(
                "the operator exited ({code}); see {}",
                state.join("bench-operator.log").display()
            );
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "not converged after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rss = peak_rss_mib(operator.id());
    let server_cpu = control_plane_cpu(state) - cpu_before;
    let kwok_cpu = services_cpu(state, &["kwok"]) - kwok_before;
    let operator_cpu = cpu_seconds(operator.id());
    // The operator announces readiness with an Event just after the status says so; that write
    // belongs to convergence, so the run ends once it is there.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let waiting = Instant::now();
    while events.list(&ready_event()).await?.items.is_empty() {
        anyhow::ensure!(
            waiting.elapsed() < Duration::from_secs(60),
            "the Factory is ready but no Ready Event came within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One read of the operator's phase serves both counts.
    let (phase, _) = audit_since(audit, offset)?;
    let kwok = kwok_activity(&phase);
    let converging = audit_counts(&phase);
    let kwok_restarts = kwok.watches;
    let heartbeats = kubelets.rates_since(written, started.elapsed());
    let stages = operator_stages(&std::fs::read_to_string(state.join("bench-operator.log"))?);
    eprintln!(
        "the operator listed the Nodes in {} and wrote them in {}",
        seconds_or_na(stages.list),
        seconds_or_na(stages.pass)
    );
    eprintln!(
        "converged in {:.1} s; kwok used {kwok_cpu:.1} s of CPU and restarted its Node watch \
         {kwok_restarts} times; Node status reports {:.0}/s, lease renewals {:.0}/s",
        converged.as_secs_f64(),
        heartbeats.0,
        heartbeats.1
    );
    Ok((
        Converged {
            plain,
            converged,
            rss,
            plain_server_cpu,
            server_cpu,
            operator_cpu,
            stages,
            requests: converging.requests,
            writes: converging.writes.len(),
            plain_kwok_restarts,
            kwok_restarts,
            plain_heartbeats,
            heartbeats,
        },
        operator,
    ))
}

/// Where the operator's convergence went, from its JSON log.
#[derive(Debug, Default, PartialEq)]
struct OperatorStages {
    /// From its first line to its Node watch's first list being complete.
    list: Option<f64>,
    /// Its first pass of Node writes, as it logged it.
    pass: Option<f64>,
}

fn operator_stages(log: &str) -> OperatorStages {
    let events: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let at = |event: &Value| event["timestamp"].as_str()?.parse::<Timestamp>().ok();
    let find = |message: &str| events.iter().find(|e| e["message"] == message);
    let list = events
        .first()
        .and_then(at)
        .zip(find("node watch synced; starting controllers").and_then(at))
        .map(|(start, synced)| synced.duration_since(start).as_secs_f64());
    let pass = find("node labels and taints updated").and_then(|e| e["seconds"].as_f64());
    OperatorStages { list, pass }
}

fn seconds_or_na(seconds: Option<f64>) -> String {
    seconds.map_or("n/a".into(), |s| format!("{s:.1} s"))
}

/// The operator's `Ready` Event of the bench Factory.
fn ready_event() -> ListParams {
    ListParams::default()
        .fields("involvedObject.kind=Factory,involvedObject.name=bench,reason=Ready")
}

/// Stops the operator with SIGTERM, as Kubernetes does (so that a heap profile gets written),
/// and waits for it; SIGKILL after 60 s.
fn stop(mut operator: std::process::Child, state: &Path) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status();
    let asked = Instant::now();
    while operator.try_wait()?.is_none() {
        if asked.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "the operator did not stop within 60 s of SIGTERM; killed (see {})",
                state.join("bench-operator.log").display()
            );
            operator.kill()?;
            operator.wait()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The control plane's folder goes with it; a heap profile is kept.
    let profile = state.join("dhat-heap.json");
    if profile.exists() {
        let kept = repo_root().join("target/dhat-heap.json");
        std::fs::rename(&profile, &kept)?;
        eprintln!("heap profile: {}", kept.display());
    }
    Ok(())
}

/// With the operator stopped, puts the cluster back as the next run must find it: the operator's
/// labels, annotation and taints off every Node (an empty apply under its field manager), the
/// Factory's status and its Ready Event gone. The ConfigMaps and StorageClasses it made stay, so
/// a later run writes a few objects fewer than the first.
async fn take_back_operator_writes(
    client: &kube::Client,
    factories: &Api<Factory>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (count, _) = plain_patch_loop_as(client, baseline_undo, OPERATOR_MANAGER, true).await?;
    factories
        .patch_status(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": null})),
        )
        .await?;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .delete_collection(&Default::default(), &ready_event())
        .await?;
    eprintln!(
        "the operator's writes on {count} Nodes taken back in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_stages_are_read_from_its_log() {
        let log = r#"{"timestamp":"2026-12-05T07:11:15.422Z","level":"INFO","message":"serving /metrics, /healthz and /readyz"}
{"timestamp":"2026-12-05T07:11:22.463Z","level":"INFO","message":"node watch synced; starting controllers","nodes":25001}
not JSON
{"timestamp":"2026-12-05T07:13:36.379Z","level":"INFO","message":"node labels and taints updated","nodes":25000,"conflicts":0,"seconds":133.358}
{"timestamp":"2026-12-05T07:23:36.379Z","level":"INFO","message":"node labels and taints updated","nodes":1,"conflicts":0,"seconds":0.01}"#;
        let stages = operator_stages(log);
        assert!((stages.list.unwrap() - 7.041).abs() < 1e-9);
        assert_eq!(stages.pass, Some(133.358));
        assert_eq!(operator_stages(""), OperatorStages::default());
    }
}
