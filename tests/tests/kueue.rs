//! Kueue on the real control plane: the operator writes the Factory's Topology, the pools'
//! ResourceFlavors and the tenants' queues; a real Kueue (`tests/control-plane kueue-up`: its
//! manager, CRDs and webhooks as released) admits Jobs on simulated GPU Nodes and places them by
//! the fabric; the Pods land where the fabric says. The operator runs in-process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Factory, GpuSystem, Workspace};
use fabbrica_operator::Settings;
use fabbrica_tests::{
    InProcessOperator, client, eventually, gpu_node, install_crds, kubeconfig_path,
    register_gpu_node, repo_root, unique_name,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
/// The label on this file's Factories; each test's operator reconciles only its own.
const TEST_LABEL: &str = "fabbrica.io/test-kueue";
/// The Node label each test's pool selects.
const POOL_LABEL: &str = "kueue.test/pool";

/// Kueue, running while any test of this file needs it: the first starts it, the last stops
/// it and removes its CRDs and webhooks, since the other test files expect no Kueue.
struct Kueue;

static KUEUE_USERS: Mutex<usize> = Mutex::new(0);

fn control_plane(command: &str) -> anyhow::Result<()> {
    let state = kubeconfig_path()
        .parent()
        .context("the kubeconfig is in the control plane's state folder")?
        .to_path_buf();
    let output = std::process::Command::new(repo_root().join("tests/control-plane"))
        .arg(command)
        .env("FABBRICA_CONTROL_PLANE_DIR", state)
        .output()
        .with_context(|| format!("running tests/control-plane {command}"))?;
    if !output.status.success() {
        bail!(
            "tests/control-plane {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Kueue {
    fn start() -> anyhow::Result<Self> {
        let mut users = KUEUE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *users == 0 {
            control_plane("kueue-up")?;
        }
        *users += 1;
        Ok(Self)
    }
}

impl Drop for Kueue {
    fn drop(&mut self) {
        let mut users = KUEUE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0
            && let Err(err) = control_plane("kueue-down")
        {
            eprintln!("{err}");
        }
    }
}

/// This file's operator, in this process until stopped.
fn start_operator(client: &Client, factory: &str) -> InProcessOperator {
    InProcessOperator::start(
        client,
        Settings {
            namespace: "default".into(),
            gpu_operator_namespace: "default".into(),
            factory_selector: Some(format!("{TEST_LABEL}={factory}")),
            debounce: Duration::from_millis(100),
            reporter: "kueue-tests".into(),
            ..Settings::default()
        },
    )
}

fn kueue_api(client: &Client, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", kind));
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// One tenant: its name, GPUs granted on the pool, and GPUs it may borrow.
struct Tenant {
    name: String,
    gpus: u32,
    borrowing_limit: u32,
}

impl Tenant {
    fn new(site: &str, suffix: &str, gpus: u32, borrowing_limit: u32) -> Self {
        Self {
            name: format!("{site}{suffix}"),
            gpus,
            borrowing_limit,
        }
    }

    fn namespace(&self) -> String {
        format!("ws-{}", self.name)
    }
}

/// A Factory with one pool of `nodes` simulated Nodes of `system`, placed in scalable units of
/// `per_unit` Nodes by name, its tenants, and the operator reconciling them.
struct Site {
    client: Client,
    name: String,
    nodes: Vec<String>,
    operator: Option<InProcessOperator>,
    _kueue: Kueue,
}

impl Site {
    async fn start(
        name: &str,
        system: GpuSystem,
        nodes: u32,
        per_unit: u32,
        tenants: &[&Tenant],
    ) -> anyhow::Result<Self> {
        let kueue = Kueue::start()?;
        let client = client().await?;
        install_crds(&client).await?;
        let name = name.to_owned();
        let node_api = Api::<Node>::all(client.clone());
        let per_rack = fabbrica_crds::catalog::system(system).nodes_per_rack;
        let mut names = Vec::new();
        for i in 0..nodes {
            let node_name = format!("{name}-{i:03}");
            let node = gpu_node(
                &node_name,
                system,
                i / per_rack,
                BTreeMap::from([(POOL_LABEL.to_owned(), name.clone())]),
            )?;
            register_gpu_node(&node_api, &node).await?;
            names.push(node_name);
        }
        let factory: Factory = serde_json::from_value(json!({
            "apiVersion": "fabbrica.io/v1alpha1",
            "kind": "Factory",
            "metadata": {"name": name, "labels": {TEST_LABEL: name}},
            "spec": {
                "site": {"name": name, "country": "IT", "tier": "aiFactory"},
                "gpuPools": [{
                    "name": "train",
                    "nodeSelector": {POOL_LABEL: name},
                    "system": system.id(),
                    "expectedNodes": nodes,
                }],
                "fabric": {
                    "type": "infiniband",
                    "linkSpeed": "400G",
                    "railsPerNode": fabbrica_crds::catalog::system(system).compute_rails,
                    "topology": {"source": "nodeOrder", "nodesPerScalableUnit": per_unit},
                },
            },
        }))?;
        let params = PatchParams::apply("kueue-tests").force();
        Api::<Factory>::all(client.clone())
            .patch(&name, &params, &Patch::Apply(&factory))
            .await?;
        let site = Self {
            client: client.clone(),
            name: name.clone(),
            nodes: names,
            operator: Some(start_operator(&client, &name)),
            _kueue: kueue,
        };
        for tenant in tenants {
            site.grant(tenant).await?;
        }
        for tenant in tenants {
            site.wait_until_queue_active(tenant).await?;
        }
        Ok(site)
    }

    /// Applies the tenant's Workspace (its grant and borrowing limit on the pool).
    async fn grant(&self, tenant: &Tenant) -> anyhow::Result<()> {
        let workspace: Workspace = serde_json::from_value(json!({
            "apiVersion": "fabbrica.io/v1alpha1",
            "kind": "Workspace",
            "metadata": {"name": tenant.name},
            "spec": {
                "factory": self.name,
                "tenant": {"name": tenant.name, "kind": "research"},
                "namespace": tenant.namespace(),
                "gpuQuota": [{
                    "pool": "train",
                    "gpus": tenant.gpus,
                    "borrowingLimit": tenant.borrowing_limit,
                }],
            },
        }))?;
        let params = PatchParams::apply("kueue-tests").force();
        Api::<Workspace>::all(self.client.clone())
            .patch(&tenant.name, &params, &Patch::Apply(&workspace))
            .await?;
        Ok(())
    }

    /// Waits until Kueue reports the tenant's ClusterQueue active with its grant, and every Node
    /// of the pool carries its place in the fabric.
    async fn wait_until_queue_active(&self, tenant: &Tenant) -> anyhow::Result<()> {
        let queues = kueue_api(&self.client, "ClusterQueue", None);
        let grant = tenant.gpus.to_string();
        eventually(
            &format!("Kueue reports ClusterQueue {} active with {grant} GPUs", tenant.name),
            WAIT,
            || async {
                let Some(cq) = queues.get_opt(&tenant.name).await? else {
                    return Ok(None);
                };
                let active = cq.data["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Active" && c["status"] == "True");
                let nominal = &cq.data["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
                    ["nominalQuota"];
                Ok((active && nominal == grant.as_str()).then_some(()))
            },
        )
        .await?;
        let nodes = Api::<Node>::all(self.client.clone());
        let selector = format!("{POOL_LABEL}={}", self.name);
        eventually("every Node placed in a leaf group", WAIT, || async {
            let placed = nodes
                .list_metadata(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .filter(|n| n.labels().contains_key(labels::LEAF_GROUP))
                .count();
            Ok((placed == self.nodes.len()).then_some(()))
        })
        .await
    }

    /// The Nodes of the pool with their labels.
    async fn node_labels(&self) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
        let selector = format!("{POOL_LABEL}={}", self.name);
        Ok(Api::<Node>::all(self.client.clone())
            .list_metadata(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect())
    }

    /// Deletes the tenants and the Factory (the operator releases its Nodes), then the Nodes.
    async fn stop(mut self) -> anyhow::Result<()> {
        let workspaces = Api::<Workspace>::all(self.client.clone());
        let factories = Api::<Factory>::all(self.client.clone());
        let ours: Vec<String> = workspaces
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|ws| ws.spec.factory == self.name)
            .map(ResourceExt::name_any)
            .collect();
        for ws in &ours {
            workspaces.delete(ws, &DeleteParams::default()).await?;
        }
        factories
            .delete(&self.name, &DeleteParams::default())
            .await?;
        eventually("the Factory and its Workspaces gone", WAIT, || async {
            let mut left = factories.get_opt(&self.name).await?.is_some();
            for ws in &ours {
                left |= workspaces.get_opt(ws).await?.is_some();
            }
            Ok((!left).then_some(()))
        })
        .await?;
        if let Some(operator) = self.operator.take() {
            operator.stop().await?;
        }
        let nodes = Api::<Node>::all(self.client.clone());
        for node in &self.nodes {
            nodes.delete(node, &DeleteParams::default()).await?;
        }
        Ok(())
    }
}

/// A Job of `pods` Pods of `gpus` GPUs each in `namespace`, submitted to `queue`, with the
/// PodSet annotations `annotations` (Kueue's topology requests); restricted Pod Security.
async fn submit(
    client: &Client,
    namespace: &str,
    queue: &str,
    name: &str,
    pods: u32,
    gpus: u32,
    annotations: Value,
) -> anyhow::Result<()> {
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {fabbrica_crds::kueue::QUEUE_NAME: queue}},
        "spec": {
            "parallelism": pods,
            "completions": pods,
            "completionMode": "Indexed",
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "train",
                        "image": "nvcr.io/nvidia/pytorch:24.10-py3",
                        "resources": {
                            "requests": {labels::GPU_RESOURCE: gpus.to_string()},
                            "limits": {labels::GPU_RESOURCE: gpus.to_string()},
                        },
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    }))?;
    Api::<Job>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &job)
        .await?;
    Ok(())
}

/// The Nodes the Job's Pods were bound to, once all `pods` of them were.
async fn placed(
    client: &Client,
    namespace: &str,
    job: &str,
    pods: usize,
) -> anyhow::Result<Vec<String>> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let selector = format!("batch.kubernetes.io/job-name={job}");
    eventually(
        &format!("the {pods} Pods of Job {job} bound to Nodes"),
        WAIT,
        || async {
            let nodes: Vec<String> = api
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            Ok((nodes.len() >= pods).then_some(nodes))
        },
    )
    .await
}

/// The Kueue Workload of a Job, once Kueue made it.
async fn workload(client: &Client, namespace: &str, job: &str) -> anyhow::Result<DynamicObject> {
    let api = kueue_api(client, "Workload", Some(namespace));
    eventually(&format!("the Workload of Job {job}"), WAIT, || async {
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|w| {
                w.owner_references()
                    .iter()
                    .any(|o| o.kind == "Job" && o.name == job)
            }))
    })
    .await
}

fn condition<'a>(object: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn admitted(workload: &DynamicObject) -> bool {
    condition(workload, "Admitted").is_some_and(|c| c["status"] == "True")
}

/// Waits until the Job's Workload is admitted; fails with Kueue's reason if it is not.
async fn wait_admitted(client: &Client, namespace: &str, job: &str) -> anyhow::Result<()> {
    let api = kueue_api(client, "Workload", Some(namespace));
    let name = workload(client, namespace, job).await?.name_any();
    let result = eventually(&format!("Kueue admits Job {job}"), WAIT, || async {
        Ok(admitted(&api.get(&name).await?).then_some(()))
    })
    .await;
    if result.is_err() {
        let w = api.get(&name).await?;
        let last = condition(&w, "QuotaReserved").cloned().unwrap_or_default();
        return result.with_context(|| format!("Kueue's last word on the Workload: {last}"));
    }
    result
}

/// Asserts the Job's Workload stays pending for a while and returns Kueue's message for it.
async fn stays_pending(client: &Client, namespace: &str, job: &str) -> anyhow::Result<String> {
    let api = kueue_api(client, "Workload", Some(namespace));
    let name = workload(client, namespace, job).await?.name_any();
    // Kueue says why as soon as it tried; then the Workload must stay unadmitted.
    let message = eventually(&format!("Kueue's reason for Job {job}"), WAIT, || async {
        let w = api.get(&name).await?;
        anyhow::ensure!(!admitted(&w), "Job {job} was admitted");
        Ok(condition(&w, "QuotaReserved")
            .filter(|c| c["status"] == "False")
            .and_then(|c| c["message"].as_str())
            .filter(|m| !m.is_empty())
            .map(str::to_owned))
    })
    .await?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        anyhow::ensure!(
            !admitted(&api.get(&name).await?),
            "Job {job} was admitted: {message}"
        );
    }
    Ok(message)
}

/// The values of `label` over the Nodes the Pods landed on.
fn domains(
    nodes: &BTreeMap<String, BTreeMap<String, String>>,
    placed: &[String],
    label: &str,
) -> anyhow::Result<BTreeSet<String>> {
    placed
        .iter()
        .map(|n| {
            nodes
                .get(n)
                .and_then(|l| l.get(label))
                .cloned()
                .with_context(|| format!("Node {n} has no {label}"))
        })
        .collect()
}

#[tokio::test]
async fn a_job_asking_for_one_leaf_group_lands_under_one_and_a_larger_one_spans_as_few_as_possible()
-> anyhow::Result<()> {
    // 36 DGX H100 in three scalable units of 12: three leaf groups of 12 Nodes.
    let name = unique_name("tas");
    let tenant = Tenant::new(&name, "a", 288, 0);
    let site = Site::start(&name, GpuSystem::DgxH100, 36, 12, &[&tenant]).await?;
    let client = site.client.clone();
    let ns = tenant.namespace();

    // The Factory's Topology follows the fabric, and the pool's flavor names it.
    let topology = kueue_api(&client, "Topology", None).get(&name).await?;
    let levels: Vec<&str> = topology.data["spec"]["levels"]
        .as_array()
        .context("levels")?
        .iter()
        .filter_map(|l| l["nodeLabel"].as_str())
        .collect();
    assert_eq!(
        levels,
        [
            labels::SCALABLE_UNIT,
            labels::LEAF_GROUP,
            fabbrica_crds::kueue::HOSTNAME
        ]
    );
    let flavor = kueue_api(&client, "ResourceFlavor", None)
        .get(&format!("{name}-train"))
        .await?;
    assert_eq!(flavor.data["spec"]["topologyName"], json!(name));
    // Topograph's labels say the same as fabbrica's.
    let nodes = site.node_labels().await?;
    for (node, l) in &nodes {
        assert_eq!(
            l.get(labels::TOPOGRAPH_TIER_LEAF),
            l.get(labels::LEAF_GROUP),
            "{node}"
        );
        assert_eq!(
            l.get(labels::TOPOLOGY_SPINE),
            l.get(labels::SCALABLE_UNIT),
            "{node}"
        );
    }

    // 8 Pods x 8 GPUs, required in one leaf group.
    let required = json!({fabbrica_crds::kueue::REQUIRED_TOPOLOGY: labels::LEAF_GROUP});
    submit(&client, &ns, "default", "one-leaf", 8, 8, required).await?;
    wait_admitted(&client, &ns, "one-leaf").await?;
    let on = placed(&client, &ns, "one-leaf", 8).await?;
    let groups = domains(&nodes, &on, labels::LEAF_GROUP)?;
    assert_eq!(groups.len(), 1, "8 Pods spread over leaf groups {groups:?}");
    assert_eq!(
        on.iter().collect::<BTreeSet<_>>().len(),
        8,
        "one Pod per Node"
    );

    // 16 Pods x 8 GPUs cannot fit one leaf group of 12: preferred, they span two, not three.
    let preferred = json!({fabbrica_crds::kueue::PREFERRED_TOPOLOGY: labels::LEAF_GROUP});
    submit(&client, &ns, "default", "two-leaves", 16, 8, preferred).await?;
    wait_admitted(&client, &ns, "two-leaves").await?;
    let on = placed(&client, &ns, "two-leaves", 16).await?;
    let groups = domains(&nodes, &on, labels::LEAF_GROUP)?;
    assert_eq!(
        groups.len(),
        2,
        "16 Pods spread over leaf groups {groups:?}"
    );

    site.stop().await
}

#[tokio::test]
async fn a_72_gpu_job_asking_for_nvlink_lands_in_one_racks_domain() -> anyhow::Result<()> {
    // Two GB200 NVL72 racks of 18 trays in one scalable unit: leaf groups of 32 trays split the
    // second rack, so only the first rack's NVLink domain holds 18 trays under one leaf group.
    let name = unique_name("nvl");
    let tenant = Tenant::new(&name, "a", 144, 0);
    let site = Site::start(&name, GpuSystem::Gb200Nvl72, 36, 36, &[&tenant]).await?;
    let client = site.client.clone();
    let ns = tenant.namespace();
    let topology = kueue_api(&client, "Topology", None).get(&name).await?;
    assert_eq!(
        topology.data["spec"]["levels"][2]["nodeLabel"],
        labels::NVLINK_DOMAIN
    );
    let nodes = site.node_labels().await?;
    for (node, l) in &nodes {
        // The NVLink domain is the tray's GPU clique, as Topograph's accelerator domain.
        assert_eq!(
            l.get(labels::NVLINK_DOMAIN),
            l.get(labels::GPU_CLIQUE),
            "{node}"
        );
        assert_eq!(
            l.get(labels::TOPOGRAPH_ACCELERATOR_DOMAIN),
            l.get(labels::GPU_CLIQUE),
            "{node}"
        );
    }

    // 18 Pods x 4 GPUs: 72 GPUs, one NVL72 rack.
    let nvlink = json!({fabbrica_crds::kueue::REQUIRED_TOPOLOGY: labels::NVLINK_DOMAIN});
    submit(&client, &ns, "default", "nvl72", 18, 4, nvlink).await?;
    wait_admitted(&client, &ns, "nvl72").await?;
    let on = placed(&client, &ns, "nvl72", 18).await?;
    let cliques = domains(&nodes, &on, labels::GPU_CLIQUE)?;
    assert_eq!(
        cliques.len(),
        1,
        "72 GPUs spread over NVLink domains {cliques:?}"
    );
    assert_eq!(on.iter().collect::<BTreeSet<_>>().len(), 18);

    site.stop().await
}

#[tokio::test]
async fn grants_borrowing_and_tenant_isolation_are_kueues() -> anyhow::Result<()> {
    // Tenant a: 16 GPUs, may borrow 16. Tenant b: 32 GPUs, lends them while idle.
    let name = unique_name("grant");
    let a = Tenant::new(&name, "a", 16, 16);
    let b = Tenant::new(&name, "b", 32, 0);
    let site = Site::start(&name, GpuSystem::DgxH100, 8, 8, &[&a, &b]).await?;
    let client = site.client.clone();
    let (ns_a, ns_b) = (a.namespace(), b.namespace());

    // Beyond a's grant and what it may borrow (16 + 16): pending with Kueue's reason.
    submit(&client, &ns_a, "default", "too-big", 5, 8, json!({})).await?;
    let reason = stays_pending(&client, &ns_a, "too-big").await?;
    assert!(
        reason.contains("insufficient quota"),
        "Kueue's reason: {reason}"
    );
    let local = kueue_api(&client, "LocalQueue", Some(&ns_a));
    eventually(
        "the LocalQueue counts the pending Workload",
        WAIT,
        || async {
            let lq = local.get("default").await?;
            Ok((lq.data["status"]["pendingWorkloads"].as_u64() == Some(1)).then_some(()))
        },
    )
    .await?;
    // The Workspace reports its queue as Kueue does.
    let workspaces = Api::<Workspace>::all(client.clone());
    eventually("Workspace a reports the pending Workload", WAIT, || async {
        let queue = workspaces.get(&a.name).await?.status.and_then(|s| s.queue);
        Ok(queue
            .filter(|q| q.pending_workloads == 1 && q.admitted_workloads == 0)
            .filter(|q| q.pools.iter().map(|p| p.pool.as_str()).eq(["train"])))
    })
    .await?;

    // Within grant plus borrowing limit (24 of 16 + 16): admitted, 8 of them borrowed from b.
    submit(&client, &ns_a, "default", "borrows", 3, 8, json!({})).await?;
    wait_admitted(&client, &ns_a, "borrows").await?;
    let w = workload(&client, &ns_a, "borrows").await?;
    assert_eq!(
        w.data["status"]["admission"]["clusterQueue"],
        json!(a.name),
        "admitted by a's own ClusterQueue"
    );

    // Raising a's grant to 40 (32 + 8 borrowed) admits the pending Job.
    site.grant(&Tenant::new(&name, "a", 24, 16)).await?;
    wait_admitted(&client, &ns_a, "too-big").await?;

    // a's LocalQueue pointed at b's ClusterQueue admits nothing: b's queue serves b's namespace only.
    let steal: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": "steal", "namespace": ns_a},
        "spec": {"clusterQueue": b.name},
    }))?;
    local.create(&PostParams::default(), &steal).await?;
    submit(&client, &ns_a, "steal", "stolen", 1, 8, json!({})).await?;
    let reason = stays_pending(&client, &ns_a, "stolen").await?;
    assert!(reason.contains("namespace"), "Kueue's reason: {reason}");
    // b's own work is admitted by the same ClusterQueue meanwhile.
    submit(&client, &ns_b, "default", "own", 1, 8, json!({})).await?;
    wait_admitted(&client, &ns_b, "own").await?;
    let stolen = workload(&client, &ns_a, "stolen").await?;
    assert!(!admitted(&stolen), "tenant a's Job ran on tenant b's queue");

    site.stop().await
}
