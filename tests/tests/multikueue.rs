//! One queue for many clusters, on two real control planes: the test's own as the management
//! cluster and a second one on loopback as a worker cell, each with Kueue. A tenant's Job
//! submitted once to the manager runs on the worker's simulated GPU Nodes, and its completion
//! comes back to the manager, as Kueue's MultiKueue promises.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fabbrica_crds::kueue::multikueue;
use fabbrica_tests::{client_from, eventually, kubeconfig_path, kubectl, repo_root};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
const TENANT: &str = "mk-tenant";
const CLUSTER: &str = "cell-1";

/// `tests/control-plane ARGS` for the control plane whose state is in `state`.
fn control_plane(state: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(repo_root().join("tests/control-plane"))
        .args(args)
        .env("FABBRICA_CONTROL_PLANE_DIR", state)
        .output()
        .with_context(|| format!("running tests/control-plane {args:?}"))?;
    if !output.status.success() {
        bail!(
            "tests/control-plane {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The test's control plane's state folder (where its kubeconfig is).
fn manager_state() -> PathBuf {
    kubeconfig_path()
        .parent()
        .expect("the kubeconfig is in the state folder")
        .to_path_buf()
}

/// The worker's kubeconfig as a MultiKueueCluster may hold it: the CA inline, no file paths
/// (Kueue refuses those).
fn inline_kubeconfig(state: &Path) -> anyhow::Result<String> {
    let path = state.join("kubeconfig");
    kubectl(&[
        "config",
        "view",
        "--flatten",
        "--raw",
        "--kubeconfig",
        path.to_str().expect("a UTF-8 path"),
    ])
}

fn kueue(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", kind))
}

async fn apply(client: &Client, object: Value) -> anyhow::Result<()> {
    let mut object: DynamicObject = serde_json::from_value(object)?;
    let (group, version) = object
        .types
        .as_ref()
        .and_then(|t| t.api_version.split_once('/'))
        .map(|(g, v)| (g.to_owned(), v.to_owned()))
        .unwrap_or_else(|| (String::new(), "v1".to_owned()));
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_default();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
    let name = object.name_any();
    let api: Api<DynamicObject> = match object.metadata.namespace.take() {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply("multikueue-tests").force(),
        &Patch::Apply(&object),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// The worker's queues for the tenant, as the operator writes them for a Workspace (a GPU
/// flavor, the ClusterQueue named like the Workspace, LocalQueue `default` in its namespace).
async fn tenant_queues(client: &Client, gpus: u32) -> anyhow::Result<()> {
    apply(
        client,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TENANT}}),
    )
    .await?;
    apply(
        client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
               "metadata": {"name": "mk-gpu"}, "spec": {}}),
    )
    .await?;
    let spec = json!({
        "namespaceSelector": {},
        "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [{
            "name": "mk-gpu", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": gpus}]}]}],
    });
    apply(
        client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
               "metadata": {"name": TENANT}, "spec": spec}),
    )
    .await?;
    apply(
        client,
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
               "metadata": {"name": multikueue::LOCAL_QUEUE, "namespace": TENANT},
               "spec": {"clusterQueue": TENANT}}),
    )
    .await
}

/// A Job of 2 Pods x 8 GPUs for the tenant's LocalQueue, tolerating the GPU Nodes' taints.
fn job(name: &str) -> anyhow::Result<Job> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": TENANT,
                     "labels": {"kueue.x-k8s.io/queue-name": multikueue::LOCAL_QUEUE}},
        "spec": {
            "parallelism": 2, "completions": 2, "suspend": true,
            "template": {"spec": {
                "restartPolicy": "Never",
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "train", "image": "registry.example/train:1",
                    "resources": {"requests": {"nvidia.com/gpu": 8}, "limits": {"nvidia.com/gpu": 8}}}],
            }},
        },
    }))?)
}

struct Worker {
    state: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = control_plane(&self.state, &["down"]);
    }
}

struct ManagerKueue;

impl Drop for ManagerKueue {
    fn drop(&mut self) {
        let _ = control_plane(&manager_state(), &["kueue-down"]);
    }
}

#[tokio::test]
async fn a_job_submitted_to_the_manager_runs_on_the_worker_cell() -> anyhow::Result<()> {
    // The worker cell: a second control plane with Kueue and two simulated DGX H100 Nodes.
    let worker = Worker {
        state: repo_root().join("target/control-plane-worker"),
    };
    control_plane(&worker.state, &["up"])?;
    control_plane(&worker.state, &["kueue-up"])?;
    control_plane(&worker.state, &["nodes", "2", "dgx-h100"])?;
    let worker_client = client_from(&worker.state.join("kubeconfig")).await?;
    tenant_queues(&worker_client, 16).await?;

    // The manager: Kueue, the worker's credentials, and the MultiKueue setup `blueprint render`
    // writes to gitops/manager (the same builder).
    let _kueue = ManagerKueue;
    control_plane(&manager_state(), &["kueue-up"])?;
    let manager = fabbrica_tests::client().await?;
    apply(
        &manager,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": multikueue::kubeconfig_secret(CLUSTER),
                            "namespace": multikueue::KUEUE_NAMESPACE},
               "stringData": {multikueue::KUBECONFIG_KEY: inline_kubeconfig(&worker.state)?}}),
    )
    .await?;
    let tenants = [multikueue::ManagedTenant {
        workspace: TENANT.into(),
        namespace: TENANT.into(),
        gpus: 16,
    }];
    for object in multikueue::build_manager("mk-site", &[CLUSTER.to_owned()], &tenants) {
        apply(&manager, object).await?;
    }
    let clusters: Api<DynamicObject> = Api::all_with(manager.clone(), &kueue("MultiKueueCluster"));
    eventually("the manager's Kueue reaches the worker", WAIT, || {
        let clusters = clusters.clone();
        async move {
            let cluster = clusters.get(CLUSTER).await?;
            Ok(condition(&cluster.data, "Active")
                .filter(|s| s == "True")
                .map(|_| ()))
        }
    })
    .await?;

    // Submitted once, to the manager.
    let jobs: Api<Job> = Api::namespaced(manager.clone(), TENANT);
    jobs.create(&Default::default(), &job("train")?).await?;
    let worker_pods: Api<Pod> = Api::namespaced(worker_client.clone(), TENANT);
    let placed = eventually("the Job's Pods run on the worker's GPU Nodes", WAIT, || {
        let worker_pods = worker_pods.clone();
        async move {
            let pods = worker_pods
                .list(&ListParams::default().labels("job-name=train"))
                .await?;
            let nodes: Vec<String> = pods
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            Ok((nodes.len() == 2).then_some(nodes))
        }
    })
    .await?;
    assert!(
        placed.iter().all(|n| n.starts_with("dgx-h100-")),
        "placed on {placed:?}"
    );
    let manager_pods: Api<Pod> = Api::namespaced(manager.clone(), TENANT);
    assert!(
        manager_pods
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "nothing runs on the manager itself"
    );
    let workloads: Api<DynamicObject> =
        Api::namespaced_with(manager.clone(), TENANT, &kueue("Workload"));
    let workload = workloads.list(&ListParams::default()).await?.items;
    assert_eq!(workload.len(), 1, "one Workload on the manager");
    assert_eq!(
        workload[0].data["status"]["clusterName"].as_str(),
        Some(CLUSTER),
        "the manager's Workload names the cell it runs in: {:#}",
        workload[0].data["status"]
    );
    // kwok completes the Pods; the worker's result comes back to the manager's Job.
    eventually("the manager's Job completes", WAIT, || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.get("train").await?;
            let done = job
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True");
            Ok(done.then_some(()))
        }
    })
    .await?;

    // The manager's side goes with Kueue (kueue-down removes its objects); the namespace too.
    Api::<Namespace>::all(manager.clone())
        .delete(TENANT, &Default::default())
        .await?;
    Ok(())
}

fn condition(data: &Value, kind: &str) -> Option<String> {
    data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
        .map(str::to_owned)
}
