//! Operator at gigafactory scale, against the real control plane.
//!
//! Registers N Nodes (default 12,500: DGX B200 training nodes and a MIG-shared
//! DGX H200 pool, with GPU allocatable and scalable-unit labels), times a plain
//! loop of writes like the operator's from one client, then starts the operator
//! binary, applies a Factory for the Nodes and measures: time until every pool
//! is ready, the operator's peak RSS, API requests and writes during convergence,
//! and writes during 60 s of steady state. Run it through `tests/bench-operator`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use fabbrica_crds::v1alpha1::Factory;
use fabbrica_tests::{client, install_crds, kubeconfig_path, kubectl, repo_root};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const OPERATOR_USER: &str = "system:serviceaccount:fabbrica-system:fabbrica-operator";
const IN_FLIGHT: usize = 16;

fn pools(nodes: usize) -> [(&'static str, &'static str, usize, u32); 2] {
    // A Gigafactory's proportions: most nodes train, one in 25 serves notebooks (MIG).
    let interactive = (nodes / 25).max(1);
    [
        ("train", "dgx-b200", nodes - interactive, 8),
        ("interactive", "dgx-h200", interactive, 56),
    ]
}

async fn register_nodes(client: &kube::Client, nodes: usize) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let specs: Vec<(String, &str, u32, usize)> = pools(nodes)
        .into_iter()
        .flat_map(|(pool, _, count, gpus)| {
            (0..count).map(move |i| (format!("bench-{pool}-{i:05}"), pool, gpus, i))
        })
        .collect();
    futures::stream::iter(specs)
        .map(|(name, pool, gpus, i)| {
            let api = api.clone();
            async move {
                let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
                    "bench.fabbrica.io/pool": pool,
                    "topology.example.com/scalable-unit": format!("su{:03}", i / 32),
                }}}))?;
                match api.create(&PostParams::default(), &node).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                let status = json!({"status": {
                    "allocatable": {"nvidia.com/gpu": gpus.to_string()},
                    "capacity": {"nvidia.com/gpu": gpus.to_string()},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "bench",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                }});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// The field manager of the plain loop.
const BASELINE_MANAGER: &str = "fabbrica-bench-baseline";

/// The writes the operator makes, from one client, 16 in flight: per Node one server-side apply of
/// as many labels as a pool member gets (7), an annotation and a one-taint `spec.taints`, under
/// other keys so that the operator's own writes still change every Node.
fn baseline_write(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "bench.fabbrica.io/baseline-factory": "bench", "bench.fabbrica.io/baseline-pool": "train",
            "bench.fabbrica.io/baseline-device-plugin": "train", "bench.fabbrica.io/baseline-mig": "all-disabled",
            "bench.fabbrica.io/baseline-rails": "8", "bench.fabbrica.io/baseline-su": "su001",
            "bench.fabbrica.io/baseline-leaf": "su001-leaf0",
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
    let api: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = api
        .list_metadata(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .filter(|n| n.starts_with("bench-"))
        .collect();
    let started = Instant::now();
    let params = PatchParams::apply(BASELINE_MANAGER);
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
    /// Where the log ended, the offset of the next count.
    end: u64,
}

/// Requests and writes by the operator's identity in the audit log since `from` (a byte offset).
fn audit_counts(audit: &Path, from: u64) -> anyhow::Result<AuditCounts> {
    let mut file = std::fs::File::open(audit)?;
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut counts = AuditCounts {
        requests: 0,
        writes: Vec::new(),
        end,
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
    Ok(counts)
}

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
    ["kube-apiserver", "etcd"]
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
        .unwrap_or_else(|| repo_root().join("target/release/fabbrica-operator"));
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

    eprintln!("registering {nodes} nodes ...");
    let started = Instant::now();
    register_nodes(&client, nodes).await?;
    eprintln!("registered in {:.1} s", started.elapsed().as_secs_f64());

    let cpu_before = control_plane_cpu(&state);
    let (patched, baseline) = plain_patch_loop(&client, baseline_write).await?;
    let baseline_server_cpu = control_plane_cpu(&state) - cpu_before;
    eprintln!(
        "plain loop: {patched} node writes in {:.1} s",
        baseline.as_secs_f64()
    );
    let (_, undone) = plain_patch_loop(&client, baseline_undo).await?;
    eprintln!(
        "plain loop's writes taken back in {:.1} s",
        undone.as_secs_f64()
    );

    let offset = audit_counts(&audit, 0)?.end;
    let cpu_before = control_plane_cpu(&state);
    let started = Instant::now();
    let mut operator = Command::new(&operator_bin)
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
        .stdout(std::fs::File::create(state.join("bench-operator.log"))?)
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with cargo build --release -p fabbrica-operator)",
                operator_bin.display()
            )
        })?;
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
    let server_cpu = control_plane_cpu(&state) - cpu_before;
    let operator_cpu = cpu_seconds(operator.id());
    // The operator announces readiness with an Event just after the status says so; that write
    // belongs to convergence, so steady state starts once it is there.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let announced = ListParams::default()
        .fields("involvedObject.kind=Factory,involvedObject.name=bench,reason=Ready");
    let waiting = Instant::now();
    while events.list(&announced).await?.items.is_empty() {
        anyhow::ensure!(
            waiting.elapsed() < Duration::from_secs(60),
            "the Factory is ready but no Ready Event came within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converging = audit_counts(&audit, offset)?;
    eprintln!(
        "converged in {:.1} s; steady state for 60 s ...",
        converged.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let steady = audit_counts(&audit, converging.end)?;
    for write in &steady.writes {
        eprintln!("write in steady state: {write}");
    }
    let rss = peak_rss_mib(operator.id());
    let _ = operator.kill();
    let _ = operator.wait();

    println!("| figure | value |");
    println!("|---|---|");
    println!("| nodes | {nodes} |");
    println!(
        "| plain loop of the same writes, one client, {IN_FLIGHT} in flight | {:.1} s |",
        baseline.as_secs_f64()
    );
    println!(
        "| operator: start to every pool ready | {:.1} s |",
        converged.as_secs_f64()
    );
    println!(
        "| ratio to the plain loop | {:.2} |",
        converged.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "| operator peak RSS | {} |",
        rss.map_or("n/a".into(), |m| format!("{m:.0} MiB"))
    );
    println!(
        "| CPU of API server and etcd: plain loop / operator to ready | {baseline_server_cpu:.1} s / {server_cpu:.1} s |"
    );
    println!(
        "| operator CPU, start to ready | {} |",
        operator_cpu.map_or("n/a".into(), |s| format!("{s:.1} s"))
    );
    println!(
        "| API requests during convergence | {} |",
        converging.requests
    );
    println!(
        "| API writes during convergence | {} |",
        converging.writes.len()
    );
    println!(
        "| API requests / writes in 60 s of steady state | {} / {} |",
        steady.requests,
        steady.writes.len()
    );
    Ok(())
}
