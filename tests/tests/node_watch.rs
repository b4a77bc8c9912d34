//! The operator's Node watch reads Nodes in protobuf, as the scheduler and the controller manager
//! do, so the API server encodes no Node event in JSON for it alone. Against the real API server:
//! its list and its watch see of a Node exactly what the whole Node in JSON says (labels,
//! fabbrica's own managed fields and taint record, taints with their times, readiness, GPUs), and
//! a request the API server refuses is the Status kube reads.

use std::time::Duration;

use fabbrica_crds::labels;
use fabbrica_operator::FIELD_MANAGER;
use fabbrica_operator::nodes::{NodeFacts, NodeMeta, TAINTS_ANNOTATION};
use fabbrica_operator::proto::node_client;
use fabbrica_operator::watched::WatchedNode;
use fabbrica_tests::{client, eventually, unique_name};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// What the Node watch's list says of `name`, when it says it of the same resourceVersion as the
/// whole Node read in JSON: (its view, the whole Node's view, its facts, the whole Node's facts).
async fn both_views(
    nodes: &Api<Node>,
    watched: &Api<WatchedNode>,
    name: &str,
) -> anyhow::Result<Option<(NodeMeta, NodeMeta, NodeFacts, NodeFacts)>> {
    let whole = nodes.get(name).await?;
    let list = watched
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await?;
    let Some(mut node) = list.items.into_iter().next() else {
        return Ok(None);
    };
    if node.resource_version() != whole.resource_version() {
        return Ok(None);
    }
    Ok(Some((
        node.view(),
        NodeMeta::from_meta(&whole.metadata),
        node.take_facts(),
        NodeFacts::from_node(&whole),
    )))
}

#[tokio::test]
async fn the_node_watch_reads_protobuf_and_sees_what_the_whole_node_says() -> anyhow::Result<()> {
    let client = client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let watched: Api<WatchedNode> = Api::all(node_client(client.clone()));
    let name = unique_name("proto");

    // A Node with no kubelet: its status is this test's to write.
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "NVIDIA-B200", "zone": "z1"},
            "annotations": {"example.com/note": "not read"}},
        "spec": {"taints": [
            {"key": "example.com/drain", "effect": "NoExecute", "timeAdded": "2026-01-02T03:04:05Z"},
            {"key": "example.com/gpu", "value": "b200", "effect": "NoSchedule"},
        ]},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    // fabbrica's own write, as the operator makes it: a pool's label and its taint record.
    nodes
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                "labels": {labels::POOL: "train"},
                "annotations": {TAINTS_ANNOTATION: "example.com/gpu=b200:NoSchedule"}}}),
            ),
        )
        .await?;
    nodes
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                "capacity": {labels::GPU_RESOURCE: "8", "cpu": "224"},
                "allocatable": {labels::GPU_RESOURCE: "8", "cpu": "220"},
            }})),
        )
        .await?;

    let (view, whole_view, facts, whole_facts) =
        eventually("the list and the whole Node at one version", WAIT, || {
            both_views(&nodes, &watched, &name)
        })
        .await?;
    assert_eq!(view, whole_view);
    assert_eq!(view.labels.get(labels::POOL), Some("train"));
    assert!(view.owns_taint_record && view.owned_labels.contains(labels::POOL));
    assert_eq!(facts, whole_facts);
    assert!(facts.ready);
    assert_eq!(facts.gpus, 8);
    let drain = facts.taints.iter().find(|t| t.key == "example.com/drain");
    assert!(drain.is_some_and(|t| t.time_added.is_some()), "{facts:?}");

    // The list came in protobuf: what reaches kube is the watch's projection of the Node, which
    // has no status.capacity (a list in JSON would be the whole Node, passed through).
    let text = node_client(client.clone())
        .request_text(
            http::Request::get(format!(
                "/api/v1/nodes?fieldSelector=metadata.name%3D{name}"
            ))
            .body(Vec::new())?,
        )
        .await?;
    assert!(
        text.contains(&name) && !text.contains("capacity") && !text.contains("not read"),
        "the Node watch's list was not read in protobuf: {text}"
    );

    // The watch: a change of a label arrives, read as the whole Node says it.
    let version = nodes
        .get(&name)
        .await?
        .resource_version()
        .unwrap_or_default();
    let mut events = watched
        .watch(
            &WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(20),
            &version,
        )
        .await?
        .boxed();
    nodes
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
                "labels": {labels::POOL: "infer"},
                "annotations": {TAINTS_ANNOTATION: "example.com/gpu=b200:NoSchedule"}}}),
            ),
        )
        .await?;
    let mut seen = match tokio::time::timeout(WAIT, events.try_next()).await?? {
        Some(WatchEvent::Modified(node)) => node,
        other => anyhow::bail!("expected the label's change, got {other:?}"),
    };
    let whole = nodes.get(&name).await?;
    assert_eq!(seen.resource_version(), whole.resource_version());
    assert_eq!(seen.view(), NodeMeta::from_meta(&whole.metadata));
    assert_eq!(seen.view().labels.get(labels::POOL), Some("infer"));
    assert_eq!(seen.take_facts(), NodeFacts::from_node(&whole));

    // The API server's refusal comes through as the Status kube reads (in protobuf too).
    match watched
        .list(&ListParams::default().fields("spec.nothing=1"))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 400, "{status:?}"),
        other => anyhow::bail!("expected 400 Bad Request, got {other:?}"),
    }

    nodes.delete(&name, &DeleteParams::default()).await?;
    let mut events = events;
    let deleted = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let Ok(WatchEvent::Deleted(node)) = event {
                return Some(node.name_any());
            }
        }
        None
    })
    .await?;
    assert_eq!(deleted.as_deref(), Some(name.as_str()));
    Ok(())
}
