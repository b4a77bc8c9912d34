//! Kubelet heartbeats cost the operator no write: 36 Nodes whose simulated kubelet (a kwok of
//! this test's own) renews each lease every second and reports each Node's status every second,
//! 36 times the rate of a kubelet's 10 s lease renewal per Node, a Factory Ready on them, then
//! 20 s of that churn in which the API server's audit log shows no write by the operator; then a
//! Node losing a GPU, and one going NotReady, show in the Factory's status.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use fabbrica_crds::v1alpha1::{Factory, FactoryStatus, GpuSystem};
use fabbrica_operator::Settings;
use fabbrica_tests::kwok::Kubelets;
use fabbrica_tests::{
    InProcessOperator, KWOK_NODE_ANNOTATION, client, eventually, gpu_node, install_crds,
    kubeconfig_path, register_gpu_node, unique_name,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

const RUN_LABEL: &str = "test.fabbrica.io/heartbeats";
const NODES: usize = 36;
const WAIT: Duration = Duration::from_secs(90);
const CHURN: Duration = Duration::from_secs(20);

/// A client that acts as `user` (with the admin's rights), so the audit log tells its requests
/// from everyone else's.
async fn client_as(user: &str) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path())?;
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(vec!["system:masters".to_owned()]);
    Ok(Client::try_from(config)?)
}

fn audit_log() -> std::path::PathBuf {
    kubeconfig_path()
        .parent()
        .map(|p| p.join("audit.log"))
        .unwrap_or_default()
}

/// The audit log from byte `from` on: (each write by `user` as `verb resource/name`, the
/// Node status writes of the `nodes` by anyone, where the log ended).
fn audited(
    log: &Path,
    from: u64,
    user: &str,
    nodes: &[String],
) -> anyhow::Result<(Vec<String>, usize, u64)> {
    let mut file = std::fs::File::open(log)?;
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let (mut writes, mut heartbeats) = (Vec::new(), 0);
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let verb = event["verb"].as_str().unwrap_or_default();
        let object = &event["objectRef"];
        let is_write = matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        );
        if !is_write || event["stage"] != "ResponseComplete" {
            continue;
        }
        if event["impersonatedUser"]["username"] == user {
            writes.push(format!(
                "{verb} {}/{}",
                object["resource"].as_str().unwrap_or_default(),
                object["name"].as_str().unwrap_or_default()
            ));
        } else if object["resource"] == "nodes"
            && object["subresource"] == "status"
            && nodes.iter().any(|n| object["name"] == n.as_str())
        {
            heartbeats += 1;
        }
    }
    Ok((writes, heartbeats, end))
}

/// Deletes the test's Factory and Nodes when dropped, so a failed run leaves none for later
/// tests to count (a passing run has deleted them already).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let selector = format!("{RUN_LABEL}={}", self.0);
        let _ = fabbrica_tests::kubectl(&["delete", "factories", "-l", &selector, "--wait=false"]);
        let _ = fabbrica_tests::kubectl(&["delete", "nodes", "-l", &selector, "--wait=false"]);
    }
}

fn pool(status: &FactoryStatus) -> (u32, u64) {
    status
        .pools
        .first()
        .map_or((0, 0), |p| (p.nodes_ready, p.gpus_ready.unwrap_or(0)))
}

async fn status_shows(
    factories: &Api<Factory>,
    name: &str,
    what: &str,
    expected: (u32, u64),
) -> anyhow::Result<()> {
    eventually(what, WAIT, || async {
        let status = factories.get(name).await?.status;
        Ok(status.filter(|s| pool(s) == expected).map(|_| ()))
    })
    .await
}

#[tokio::test]
async fn heartbeats_under_churn_cost_the_operator_no_write_and_a_lost_gpu_shows()
-> anyhow::Result<()> {
    let admin = client().await?;
    install_crds(&admin).await?;
    let run = unique_name("heartbeats");
    let _cleanup = Cleanup(run.clone());
    let kubelets = Kubelets::start(&run, 4, 1.0)?;
    let nodes: Api<Node> = Api::all(admin.clone());
    let names: Vec<String> = (0..NODES).map(|i| format!("{run}-{i:02}")).collect();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let nodes = nodes.clone();
            let run = run.clone();
            let kwok = kubelets.name().to_owned();
            async move {
                let labels = BTreeMap::from([(RUN_LABEL.to_owned(), run)]);
                let mut node = gpu_node(name, GpuSystem::DgxB200, u32::try_from(i / 18)?, labels)?;
                node.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(KWOK_NODE_ANNOTATION.to_owned(), kwok);
                register_gpu_node(&nodes, &node).await
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;

    let identity = format!("fabbrica-{run}");
    let operator = InProcessOperator::start(
        &client_as(&identity).await?,
        Settings {
            namespace: "default".into(),
            gpu_operator_namespace: "default".into(),
            factory_selector: Some(format!("{RUN_LABEL}={run}")),
            debounce: Duration::from_millis(100),
            reporter: "heartbeat-tests".into(),
            ..Settings::default()
        },
    );
    let factories: Api<Factory> = Api::all(admin.clone());
    let factory: Factory = serde_json::from_value(json!({
        "apiVersion": "fabbrica.io/v1alpha1", "kind": "Factory",
        "metadata": {"name": run, "labels": {RUN_LABEL: run}},
        "spec": {
            "site": {"name": run, "country": "IT", "tier": "aiFactory"},
            "gpuPools": [{"name": "train", "nodeSelector": {RUN_LABEL: run}, "system": "dgx-b200",
                "expectedNodes": NODES,
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
                "topology": {"source": "nodeOrder"}},
            "storageTiers": [{"name": "project", "role": "project", "provisioner": "csi.example.com", "capacity": "1Pi"}],
        },
    }))?;
    factories
        .patch(
            &run,
            &PatchParams::apply("fabbrica-tests").force(),
            &Patch::Apply(&factory),
        )
        .await?;
    let all = (u32::try_from(NODES)?, 8 * u64::try_from(NODES)?);
    status_shows(&factories, &run, "every Node is ready in the status", all).await?;
    // The operator's last writes of convergence (its Ready Event) land just after the status.
    eventually("the Factory is Ready", WAIT, || async {
        let status = factories.get(&run).await?.status.unwrap_or_default();
        Ok(status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let log = audit_log();
    let (_, _, start) = audited(&log, 0, &identity, &names)?;
    tokio::time::sleep(CHURN).await;
    let (writes, heartbeats, _) = audited(&log, start, &identity, &names)?;
    // The churn was real: every Node reported its status about once a second (at least every
    // few seconds on a busy machine).
    assert!(
        heartbeats >= NODES * 5,
        "only {heartbeats} Node status reports in {CHURN:?}; kwok's heartbeats did not run"
    );
    assert!(
        writes.is_empty(),
        "the operator wrote during {CHURN:?} of heartbeats ({heartbeats} Node status reports): {writes:?}"
    );

    // A Node that loses a GPU, and one that goes NotReady, show in the status; the heartbeats
    // carry on meanwhile and change neither back.
    let merge = PatchParams::default();
    let reconciled = operator.metrics.reconciles_total("factory");
    let lost = json!({"status": {"allocatable": {"nvidia.com/gpu": "7"}}});
    nodes
        .patch_status(&names[0], &merge, &Patch::Merge(&lost))
        .await?;
    status_shows(
        &factories,
        &run,
        "the lost GPU shows in the status",
        (all.0, all.1 - 1),
    )
    .await?;
    // The change cost one reconcile, which wrote the status; the echo of that write in the
    // Factory watch triggered no second one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reconciles = operator.metrics.reconciles_total("factory") - reconciled;
    assert_eq!(
        reconciles, 1,
        "a lost GPU cost {reconciles} reconciles of the Factory"
    );
    let not_ready = json!({"metadata": {"labels": {"node-not-ready.stage.kwok.x-k8s.io": "true"}}});
    nodes
        .patch(&names[1], &merge, &Patch::Merge(&not_ready))
        .await?;
    status_shows(
        &factories,
        &run,
        "the NotReady Node shows in the status",
        (all.0 - 1, all.1 - 9),
    )
    .await?;

    factories.delete(&run, &DeleteParams::default()).await?;
    eventually("the Factory is deleted", WAIT, || async {
        Ok(factories.get_opt(&run).await?.is_none().then_some(()))
    })
    .await?;
    operator.stop().await?;
    for name in &names {
        nodes.delete(name, &DeleteParams::default()).await?;
    }
    drop(kubelets);
    Ok(())
}
