//! Allocations on the real control plane: GPU Pods on simulated GPU Nodes are metered into the
//! ledger, an allocation closes at its budget (new GPU Pods refused, notebooks scaled to zero)
//! and reopens when raised, the ledger counts every Pod exactly once however often the operator
//! is killed, and an allocation outside its access mode's limits is refused with the field named.
//! Budgets are a few GPU-seconds, so each test takes seconds. The operator runs in-process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use fabbrica_crds::v1alpha1::{
    AllocationState, AllocationStatus, Factory, GpuSystem, JupyterEnvironment, Workspace, condition,
};
use fabbrica_operator::Settings;
use fabbrica_operator::tenancy::allocation::meter::{Ledger, POD_FINALIZER};
use fabbrica_operator::tenancy::allocation::{CLOSED_QUOTA, LEDGER_KEY, apply::ledger_name};
use fabbrica_tests::{
    InProcessOperator, client, eventually, gpu_node, install_crds, register_gpu_node, unique_name,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ResourceQuota};
use k8s_openapi::jiff::{Timestamp, ToSpan};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(90);
/// Each test's operator reconciles only its own Factory's tenants.
const TEST_LABEL: &str = "fabbrica.io/test-allocation";
/// Where the in-process operators keep the ledgers.
const LEDGERS: &str = "default";

/// This file's operator, in this process until stopped.
fn start_operator(client: &Client, factory: &str) -> InProcessOperator {
    InProcessOperator::start(
        client,
        Settings {
            namespace: LEDGERS.into(),
            gpu_operator_namespace: LEDGERS.into(),
            factory_selector: Some(format!("{TEST_LABEL}={factory}")),
            debounce: Duration::from_millis(100),
            reporter: "allocation-tests".into(),
            ..Settings::default()
        },
    )
}

/// A Factory with one pool of one simulated DGX H100 (8 GPUs), tiers the test provisioner
/// serves, and a one-GPU notebook profile.
fn factory(name: &str) -> anyhow::Result<Factory> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": name, "labels": {TEST_LABEL: name}},
        "spec": {
            "site": {"name": name, "country": "IT", "tier": "aiFactory"},
            "gpuPools": [{
                "name": "gpu",
                "nodeSelector": {"allocation.test/pool": name},
                "system": "dgx-h100",
                "expectedNodes": 1,
            }],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G", "topology": {"source": "nodeOrder"}},
            "storageTiers": [
                {"name": "project", "role": "project", "provisioner": "lustre.csi.hpe.com", "capacity": "1Pi"},
            ],
            "notebooks": {
                "images": [{"name": "pytorch", "image": "nvcr.io/nvidia/pytorch:24.10-py3"}],
                "profiles": [{"name": "one", "pool": "gpu", "gpus": 1, "cpu": "4", "memory": "32Gi"}],
            },
        },
    }))?)
}

/// An allocation of `gpu_hours` under the Playground mode, open since yesterday for 2 months.
fn allocation(gpu_hours: f64) -> serde_json::Value {
    let today = Timestamp::now()
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .date();
    let start = today.checked_sub(1.day()).expect("a date");
    let end = start
        .checked_add(2.months())
        .and_then(|d| d.checked_sub(1.day()))
        .expect("a date");
    json!({
        "mode": "playground",
        "gpuHours": gpu_hours,
        "start": start.to_string(),
        "end": end.to_string(),
        "onExhausted": {"notebookGraceSeconds": 2},
    })
}

fn workspace(
    name: &str,
    factory: &str,
    allocation: Option<serde_json::Value>,
) -> anyhow::Result<Workspace> {
    let mut spec = json!({
        "factory": factory,
        "tenant": {"name": format!("Tenant {name}"), "kind": "startup"},
        "namespace": name,
        "gpuQuota": [{"pool": "gpu", "gpus": 8}],
        "storageQuota": [{"tier": "project", "capacity": "1Ti"}],
    });
    if let Some(allocation) = allocation {
        spec["allocation"] = allocation;
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// A Pod holding `gpus` GPUs of the factory's pool, fit for Pod Security `restricted`, gone at
/// once when deleted.
/// Waits until the API server applies the operator's admission policy (it loads a new policy
/// and binding a moment after they are written): a dry-run GPU Pod comes back marked.
async fn policy_in_effect(pods: &Api<Pod>, factory: &str) -> anyhow::Result<()> {
    let probe = gpu_pod("policy-probe", factory, 1)?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the admission policy marks GPU Pods", WAIT, || async {
        let pod = pods.create(&dry_run, &probe).await?;
        Ok(pod
            .finalizers()
            .iter()
            .any(|f| f == POD_FINALIZER)
            .then_some(()))
    })
    .await
}

fn gpu_pod(name: &str, factory: &str, gpus: u32) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"fabbrica.io/factory": factory, "fabbrica.io/pool": "gpu"},
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": "registry.example/cuda:12",
                "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}},
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))?)
}

async fn apply<K>(api: &Api<K>, object: &K) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply("fabbrica-tests").force();
    Ok(api
        .patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?)
}

/// Every Pod of a namespace as last seen, by UID, also after it is gone: what Kubernetes
/// reported of each, independently of the operator.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<String, Pod>>>);

impl Recorder {
    fn start(client: &Client, namespace: &str) -> (Self, JoinHandle<()>) {
        let recorder = Self::default();
        let seen = recorder.0.clone();
        let api = Api::<Pod>::namespaced(client.clone(), namespace);
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
                    seen.lock()
                        .unwrap()
                        .insert(pod.uid().unwrap_or_default(), pod);
                }
            }
        });
        (recorder, task)
    }

    /// GPU x seconds of every finished Pod: its GPUs times from its start to its deletion.
    fn gpu_seconds(&self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter_map(|pod| {
                let gpus: u64 = pod.spec.as_ref()?.containers[0]
                    .resources
                    .as_ref()?
                    .limits
                    .as_ref()?
                    .get("nvidia.com/gpu")?
                    .0
                    .parse()
                    .ok()?;
                let start = pod.status.as_ref()?.start_time.as_ref()?.0;
                let end = pod.metadata.deletion_timestamp.as_ref()?.0;
                Some(gpus * (end.as_second() - start.as_second()).max(0) as u64)
            })
            .sum()
    }

    fn pods(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn allocation_status(
    api: &Api<Workspace>,
    name: &str,
) -> anyhow::Result<Option<AllocationStatus>> {
    Ok(api.get(name).await?.status.and_then(|s| s.allocation))
}

/// Waits until the workspace's status satisfies `check`.
async fn until(
    api: &Api<Workspace>,
    name: &str,
    what: &str,
    check: impl Fn(&AllocationStatus) -> bool,
) -> anyhow::Result<AllocationStatus> {
    eventually(what, WAIT, || async {
        Ok(allocation_status(api, name).await?.filter(|s| check(s)))
    })
    .await
}

/// Waits until no Pod of `namespace` is left (all released by the operator and deleted).
async fn all_released(pods: &Api<Pod>) -> anyhow::Result<()> {
    eventually("every Pod is released and gone", WAIT, || async {
        Ok(pods
            .list(&Default::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await
}

async fn ledger(client: &Client, workspace: &str) -> anyhow::Result<Ledger> {
    let map = Api::<ConfigMap>::namespaced(client.clone(), LEDGERS)
        .get(&ledger_name(workspace))
        .await?;
    Ok(serde_json::from_str(
        map.data
            .unwrap_or_default()
            .get(LEDGER_KEY)
            .context("a ledger")?,
    )?)
}

/// A Factory of one GPU Node and one Workspace, with the operator running.
struct Site {
    client: Client,
    factory: String,
    node: String,
    workspaces: Api<Workspace>,
}

async fn site(prefix: &str) -> anyhow::Result<Site> {
    let client = client().await?;
    install_crds(&client).await?;
    let factory = unique_name(prefix);
    let node = format!("{factory}-node");
    let labels = BTreeMap::from([("allocation.test/pool".to_owned(), factory.clone())]);
    register_gpu_node(
        &Api::<Node>::all(client.clone()),
        &gpu_node(&node, GpuSystem::DgxH100, 0, labels)?,
    )
    .await?;
    apply(
        &Api::<Factory>::all(client.clone()),
        &self::factory(&factory)?,
    )
    .await?;
    Ok(Site {
        workspaces: Api::<Workspace>::all(client.clone()),
        client,
        factory,
        node,
    })
}

impl Site {
    async fn teardown(self, operator: InProcessOperator, workspace: &str) -> anyhow::Result<()> {
        let _ = self
            .workspaces
            .delete(workspace, &DeleteParams::default())
            .await;
        eventually("the workspace is deleted", WAIT, || async {
            Ok(self
                .workspaces
                .get_opt(workspace)
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        let _ = Api::<Factory>::all(self.client.clone())
            .delete(&self.factory, &DeleteParams::default())
            .await;
        eventually("the factory is deleted", WAIT, || async {
            Ok(Api::<Factory>::all(self.client.clone())
                .get_opt(&self.factory)
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        operator.stop().await?;
        Api::<Node>::all(self.client.clone())
            .delete(&self.node, &DeleteParams::default())
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn usage_is_metered_the_budget_closes_new_work_and_notebooks_and_raising_it_reopens()
-> anyhow::Result<()> {
    let site = site("alloc").await?;
    let name = format!("{}-ws", site.factory);
    // 0.01 GPU-hours: 36 GPU-seconds, used up in about 12 s by the 3 GPUs below.
    apply(
        &site.workspaces,
        &workspace(&name, &site.factory, Some(allocation(0.01)))?,
    )
    .await?;
    let operator = start_operator(&site.client, &site.factory);
    until(&site.workspaces, &name, "the allocation is open", |s| {
        s.state == AllocationState::Open
    })
    .await?;
    let (recorder, recording) = Recorder::start(&site.client, &name);
    let pods = Api::<Pod>::namespaced(site.client.clone(), &name);
    let environments = Api::<JupyterEnvironment>::namespaced(site.client.clone(), &name);
    apply(
        &environments,
        &serde_json::from_value(json!({
            "apiVersion": "fabbrica.io/v1alpha1",
            "kind": "JupyterEnvironment",
            "metadata": {"name": "nb", "namespace": name},
            "spec": {
                "image": "pytorch",
                "profile": {"pool": "gpu", "gpus": 1, "cpu": "4", "memory": "32Gi"},
                "home": {"tier": "project", "size": "1Gi"},
            },
        }))?,
    )
    .await?;
    policy_in_effect(&pods, &site.factory).await?;
    let created = pods
        .create(&PostParams::default(), &gpu_pod("train", &site.factory, 2)?)
        .await?;
    assert!(
        created.finalizers().iter().any(|f| f == POD_FINALIZER),
        "the admission policy marks a new GPU Pod: {:?}",
        created.finalizers()
    );

    // 80 %: a Warning; 100 %: closed.
    let closed = until(&site.workspaces, &name, "the allocation is used up", |s| {
        s.state == AllocationState::Exhausted
    })
    .await?;
    assert!(closed.used_gpu_seconds >= 36, "{closed:?}");
    let ws = site.workspaces.get(&name).await?;
    let allocation_condition = condition(&ws.status.unwrap_or_default().conditions, "Allocation")
        .cloned()
        .context("an Allocation condition")?;
    assert_eq!(
        (
            allocation_condition.status.as_str(),
            allocation_condition.reason.as_str()
        ),
        ("False", "AllocationExhausted")
    );
    // New GPU work is refused at admission.
    let refused = pods
        .create(&PostParams::default(), &gpu_pod("late", &site.factory, 1)?)
        .await
        .expect_err("a GPU Pod is admitted after the allocation is used up");
    assert!(refused.to_string().contains(CLOSED_QUOTA), "{refused}");
    // The notebook is scaled to zero after its grace period.
    let statefulsets = Api::<StatefulSet>::namespaced(site.client.clone(), &name);
    eventually("the notebook is scaled to zero", WAIT, || async {
        let replicas = statefulsets
            .get_opt("nb")
            .await?
            .and_then(|s| s.spec)
            .and_then(|s| s.replicas);
        Ok((replicas == Some(0)).then_some(()))
    })
    .await?;
    // The running Pod may finish; then every Pod is released and the use is final.
    pods.delete("train", &DeleteParams::default()).await?;
    all_released(&pods).await?;
    let done = until(&site.workspaces, &name, "no GPU is held", |s| {
        s.running_gpus == 0
    })
    .await?;
    let expected = recorder.gpu_seconds();
    assert!(recorder.pods() >= 2, "both Pods were seen");
    let counted = done.used_gpu_seconds;
    assert!(
        counted.abs_diff(expected) * 100 <= expected,
        "counted {counted} GPU-seconds, the Pods held {expected}"
    );
    assert_eq!(ledger(&site.client, &name).await?.total(), counted);

    // Raising the budget reopens: the quota opens, the notebook comes back, new work runs.
    let mut raised = site.workspaces.get(&name).await?;
    raised.metadata.managed_fields = None;
    raised.metadata.resource_version = None;
    raised.status = None;
    raised.spec.allocation.as_mut().unwrap().gpu_hours = Some(1.0);
    apply(&site.workspaces, &raised).await?;
    until(&site.workspaces, &name, "the allocation reopens", |s| {
        s.state == AllocationState::Open && !s.notebooks_stopped
    })
    .await?;
    eventually("the closed quota is gone", WAIT, || async {
        Ok(Api::<ResourceQuota>::namespaced(site.client.clone(), &name)
            .get_opt(CLOSED_QUOTA)
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    pods.create(&PostParams::default(), &gpu_pod("again", &site.factory, 1)?)
        .await
        .context("a GPU Pod is admitted once the budget is raised")?;
    eventually("the notebook runs again", WAIT, || async {
        let replicas = statefulsets
            .get_opt("nb")
            .await?
            .and_then(|s| s.spec)
            .and_then(|s| s.replicas);
        Ok((replicas == Some(1)).then_some(()))
    })
    .await?;
    recording.abort();
    site.teardown(operator, &name).await
}

#[tokio::test]
async fn the_ledger_counts_every_pod_once_while_the_operator_is_killed_again_and_again()
-> anyhow::Result<()> {
    let site = site("ledger").await?;
    let name = format!("{}-ws", site.factory);
    apply(&site.workspaces, &workspace(&name, &site.factory, None)?).await?;
    let mut operator = start_operator(&site.client, &site.factory);
    until(&site.workspaces, &name, "the workspace is metered", |s| {
        s.state == AllocationState::Unlimited
    })
    .await?;
    let (recorder, recording) = Recorder::start(&site.client, &name);
    let pods = Api::<Pod>::namespaced(site.client.clone(), &name);
    let running = |pod: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(&format!("{pod} runs"), WAIT, || async {
                let p = pods.get(pod).await?;
                Ok(p.status.and_then(|s| s.start_time).map(|_| ()))
            })
            .await
        }
    };
    let create = |pod: &'static str, gpus: u32| {
        let pods = pods.clone();
        let factory = site.factory.clone();
        async move {
            pods.create(&PostParams::default(), &gpu_pod(pod, &factory, gpus)?)
                .await?;
            anyhow::Ok(())
        }
    };
    let delete = |pod: &'static str| {
        let pods = pods.clone();
        async move {
            pods.delete(pod, &DeleteParams::default()).await?;
            anyhow::Ok(())
        }
    };
    // Pods start and finish while the operator runs, is killed mid-work, and is down.
    create("a", 2).await?;
    create("b", 1).await?;
    running("a").await?;
    running("b").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    delete("a").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    operator.kill().await;
    // Down: a Pod starts and finishes unseen, another finishes.
    create("c", 3).await?;
    running("c").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    delete("c").await?;
    delete("b").await?;
    // Up for a moment, killed while it settles, up again.
    for pause in [150, 400, 50] {
        operator = start_operator(&site.client, &site.factory);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        operator.kill().await;
    }
    // The Pods deleted while it was down still hold their GPUs until released: 7 of 8 now.
    create("d", 1).await?;
    running("d").await?;
    operator = start_operator(&site.client, &site.factory);
    tokio::time::sleep(Duration::from_secs(2)).await;
    delete("d").await?;
    all_released(&pods).await?;
    let done = until(&site.workspaces, &name, "no GPU is held", |s| {
        s.running_gpus == 0
    })
    .await?;
    let expected = recorder.gpu_seconds();
    assert_eq!(recorder.pods(), 4);
    assert!(expected > 0);
    // No loss and no double count: exactly what the Pods held, as an undisturbed run counts.
    assert_eq!(done.used_gpu_seconds, expected);
    // Once the Pods are gone, their entries go too; their GPU-seconds stay.
    let book = eventually(
        "the ledger drops the entries of deleted Pods",
        WAIT,
        || async {
            let book = ledger(&site.client, &name).await?;
            Ok(book.pods.is_empty().then_some(book))
        },
    )
    .await?;
    assert_eq!(book.total(), expected);
    assert_eq!(book.accounted, 4);
    // A restart changes nothing.
    operator.stop().await?;
    let operator = start_operator(&site.client, &site.factory);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ledger(&site.client, &name).await?.total(), expected);
    recording.abort();
    site.teardown(operator, &name).await
}

#[tokio::test]
async fn an_allocation_outside_its_modes_limits_is_refused_with_the_field_named()
-> anyhow::Result<()> {
    let site = site("limits").await?;
    let name = format!("{}-ws", site.factory);
    // The schema refuses what one object can say: both a total and per-pool hours.
    let mut both = allocation(10.0);
    both["pools"] = json!([{"pool": "gpu", "gpuHours": 10}]);
    let err = apply(
        &site.workspaces,
        &workspace(&name, &site.factory, Some(both))?,
    )
    .await
    .expect_err("the API server accepted both gpuHours and pools");
    assert!(err.to_string().contains("spec.allocation"), "{err}");
    // The access mode's limits come from the catalog: the operator refuses, naming the field
    // and the valid range, and enforces nothing.
    let mut large = allocation(60_000.0);
    large["mode"] = json!("fast-lane");
    apply(
        &site.workspaces,
        &workspace(&name, &site.factory, Some(large))?,
    )
    .await?;
    let operator = start_operator(&site.client, &site.factory);
    let message = eventually("the workspace is refused", WAIT, || async {
        let ws = site.workspaces.get(&name).await?;
        let status = ws.status.unwrap_or_default();
        Ok(condition(&status.conditions, "Ready")
            .filter(|c| c.reason == "InvalidSpec")
            .map(|c| c.message.clone()))
    })
    .await?;
    assert!(message.contains("spec.allocation.gpuHours"), "{message}");
    assert!(message.contains("valid: 0 to 50000 GPU-hours"), "{message}");
    let quota = Api::<ResourceQuota>::namespaced(site.client.clone(), &name)
        .get_opt(CLOSED_QUOTA)
        .await?;
    assert!(
        quota.is_none(),
        "an invalid allocation closed the namespace"
    );
    site.teardown(operator, &name).await
}
