//! The test control plane is a real Kubernetes: custom resources, the status
//! subresource and garbage collection all work as on a production cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use fabbrica_tests::{client, eventually, unique_name};
use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeStatus};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
