//! The test control plane is a real Kubernetes: custom resources, the status
//! subresource and garbage collection all work as on a production cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use fabbrica_tests::{client, eventually, gpu_node, register_gpu_node, unique_name};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, NodeStatus, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A throwaway kind, so this test does not depend on fabbrica's own CRDs.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "smoke.fabbrica.io",
    version = "v1",
    kind = "Probe",
    namespaced
)]
struct ProbeSpec {
    message: String,
}

#[tokio::test]
async fn custom_resources_apply_server_side() -> anyhow::Result<()> {
    let client = client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("fabbrica-tests").force();
    crds.patch(
        "probes.smoke.fabbrica.io",
        &params,
        &Patch::Apply(Probe::crd()),
    )
    .await?;
    await_condition(
        crds,
        "probes.smoke.fabbrica.io",
        conditions::is_crd_established(),
    )
    .await?;

    let probes: Api<Probe> = Api::namespaced(client, "default");
    let name = unique_name("probe");
    let probe = Probe::new(
        &name,
        ProbeSpec {
            message: "hello".into(),
        },
    );
    probes.patch(&name, &params, &Patch::Apply(&probe)).await?;
    let read = probes.get(&name).await?;
    assert_eq!(read.spec.message, "hello");
    assert_eq!(
        read.managed_fields()
            .first()
            .and_then(|f| f.manager.as_deref()),
        Some("fabbrica-tests")
    );
    probes.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn node_gpu_allocatable_is_set_through_the_status_subresource() -> anyhow::Result<()> {
    let client = client().await?;
    let nodes: Api<Node> = Api::all(client);
    let name = unique_name("smoke-node");
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    nodes.create(&PostParams::default(), &node).await?;
    let status = Node {
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::from([(
                "nvidia.com/gpu".to_owned(),
                Quantity("8".into()),
            )])),
            capacity: Some(BTreeMap::from([(
                "nvidia.com/gpu".to_owned(),
                Quantity("8".into()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let read = nodes.get(&name).await?;
    let allocatable = read.status.and_then(|s| s.allocatable).unwrap_or_default();
    assert_eq!(
        allocatable.get("nvidia.com/gpu"),
        Some(&Quantity("8".into()))
    );
    nodes.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}

#[tokio::test]
async fn garbage_collector_deletes_children_of_a_deleted_owner() -> anyhow::Result<()> {
    let client = client().await?;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner_name = unique_name("owner");
    let owner = maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(owner_name.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let child_name = unique_name("child");
    let child = ConfigMap {
        metadata: ObjectMeta {
            name: Some(child_name.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner_name.clone(),
                uid: owner.uid().expect("created objects have a uid"),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    maps.create(&PostParams::default(), &child).await?;
    maps.delete(&owner_name, &DeleteParams::background())
        .await?;
    eventually(
        "the garbage collector deletes the child",
        Duration::from_secs(60),
        || async { Ok(maps.get_opt(&child_name).await?.is_none().then_some(())) },
    )
    .await
}

/// The server is the release `tests/control-plane` pins, not an older one left in a cache.
#[tokio::test]
async fn the_api_server_is_a_current_kubernetes() -> anyhow::Result<()> {
    let client = client().await?;
    let version = client.apiserver_version().await?;
    let minor: u32 = version.minor.trim_end_matches('+').parse()?;
    assert_eq!(version.major, "1", "{version:?}");
    assert!(
        minor >= 35,
        "the test control plane runs {}",
        version.git_version
    );
    Ok(())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Every catalog system registers as feature discovery labels it; kwok reports it Ready and
/// renews its lease, so the node lifecycle controller keeps it schedulable.
#[tokio::test]
async fn simulated_gpu_nodes_of_every_catalog_system_are_ready_and_renew_their_leases()
-> anyhow::Result<()> {
    use fabbrica_crds::v1alpha1::GpuSystem;
    use k8s_openapi::api::coordination::v1::Lease;
    let client = client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let run = unique_name("kwok");
    let mut names = Vec::new();
    for (i, system) in GpuSystem::ALL.into_iter().enumerate() {
        let name = format!("{run}-{i}");
        let node = gpu_node(&name, system, 0, BTreeMap::new())?;
        register_gpu_node(&nodes, &node).await?;
        names.push((name, system));
    }
    for (name, system) in &names {
        let node = eventually("kwok reports the Node Ready", WAIT, || async {
            Ok(nodes.get(name).await.ok().filter(is_ready))
        })
        .await?;
        let gpus = fabbrica_crds::catalog::system(*system)
            .gpus_per_node
            .to_string();
        let allocatable = node
            .status
            .clone()
            .and_then(|s| s.allocatable)
            .unwrap_or_default();
        assert_eq!(
            allocatable.get("nvidia.com/gpu"),
            Some(&Quantity(gpus.clone()))
        );
        assert_eq!(
            node.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("nvidia.com/gpu.count")),
            Some(&gpus)
        );
        let clique = node.labels().get("nvidia.com/gpu.clique");
        assert_eq!(
            clique.is_some(),
            *system == GpuSystem::Gb200Nvl72,
            "{name}: {clique:?}"
        );
    }
    let (first, _) = &names[0];
    let renewed = |lease: &Lease| lease.spec.as_ref().and_then(|s| s.renew_time.clone());
    let before = eventually("kwok creates the Node's lease", WAIT, || async {
        Ok(leases.get_opt(first).await?.as_ref().and_then(renewed))
    })
    .await?;
    eventually("kwok renews the Node's lease", WAIT, || async {
        Ok(leases
            .get(first)
            .await
            .ok()
            .as_ref()
            .and_then(renewed)
            .filter(|t| *t != before))
    })
    .await?;
    for (name, _) in &names {
        nodes.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}

const WAIT: Duration = Duration::from_secs(60);

async fn pod_phase(pods: &Api<Pod>, name: &str) -> anyhow::Result<Option<String>> {
    Ok(pods
        .get_opt(name)
        .await?
        .and_then(|p| p.status)
        .and_then(|s| s.phase))
}

/// A Pod asking for GPUs is scheduled onto a simulated GPU Node and goes Running; one marked
/// to fail fails; a claim on a site storage class binds through the test provisioner.
#[tokio::test]
async fn pods_run_on_simulated_gpu_nodes_and_claims_bind() -> anyhow::Result<()> {
    use fabbrica_crds::v1alpha1::GpuSystem;
    let client = client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let classes: Api<StorageClass> = Api::all(client.clone());
    let run = unique_name("pods");
    let node_name = format!("{run}-node");
    // Other tests register GPU Nodes at the same time: this test's Pods ask for its own.
    let mine = BTreeMap::from([("fabbrica-tests/run".to_owned(), run.clone())]);
    let node = gpu_node(&node_name, GpuSystem::DgxH100, 0, mine)?;
    register_gpu_node(&nodes, &node).await?;
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": run}}))?,
        )
        .await?;
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": run}, "provisioner": "csi.example.com",
                "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete",
            }))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &run);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &run);
    claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "home"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": run,
                         "resources": {"requests": {"storage": "1Gi"}}},
            }))?,
        )
        .await?;
    let pod = |name: &str, labels: serde_json::Value| -> anyhow::Result<Pod> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "nodeSelector": {"fabbrica-tests/run": run},
                "containers": [{"name": "main", "image": "registry.example/cuda:12",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    "volumeMounts": [{"name": "home", "mountPath": "/home"}]}],
                "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "home"}}],
            },
        }))?)
    };
    pods.create(&PostParams::default(), &pod("trains", json!({}))?)
        .await?;
    pods.create(
        &PostParams::default(),
        &pod(
            "crashes",
            json!({"pod-container-running-failed.stage.kwok.x-k8s.io": "true"}),
        )?,
    )
    .await?;
    eventually("the GPU Pod runs", WAIT, || async {
        Ok((pod_phase(&pods, "trains").await?.as_deref() == Some("Running")).then_some(()))
    })
    .await?;
    let placed = pods.get("trains").await?;
    assert_eq!(
        placed.spec.and_then(|s| s.node_name),
        Some(node_name.clone())
    );
    let claim = claims.get("home").await?;
    assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    eventually("the Pod marked to fail fails", WAIT, || async {
        Ok((pod_phase(&pods, "crashes").await?.as_deref() == Some("Failed")).then_some(()))
    })
    .await?;
    namespaces.delete(&run, &DeleteParams::default()).await?;
    classes.delete(&run, &DeleteParams::default()).await?;
    nodes.delete(&node_name, &DeleteParams::default()).await?;
    Ok(())
}
