//! What the operator knows of Nodes, without caching a single full Node object.
//!
//! Two watches feed a compact projection:
//!
//! - **Selection**: a metadata-only watch (`PartialObjectMeta<Node>`) over every Node. It keeps each
//!   Node's labels, fabbrica's own annotation and which fields fabbrica's field manager owns (read
//!   from that manager's managedFields entry; every other entry is dropped). Pools select Nodes from
//!   this, on any Node of the cluster, at a few hundred bytes a Node.
//! - **Facts**: a watch over the Nodes that carry `fabbrica.io/factory` only, projected at once to
//!   readiness, allocatable GPUs, taints and resourceVersion. Status needs the first two and safe
//!   taint updates need the last two. CPU, storage and management Nodes never stream their spec or
//!   status to the operator, and the watch parses each Node into [`FactsNode`], which skips all but
//!   those fields, so no full Node is ever built.
//!
//! Every change of the projection (not every event: a kubelet heartbeat that changes nothing fabbrica
//! reads is ignored) sends a trigger that reconciles the Factories.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use fabbrica_crds::labels;
use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Deserializer};

use crate::FIELD_MANAGER;
use crate::interned::{Keys, Labels, Sym, sym};
use crate::metadata::{MetaNode, node_metadata_client};

/// Annotation recording the taints fabbrica put on a Node (`key=value:Effect,...`), so that it
/// removes exactly those and never a taint someone else set.
pub const TAINTS_ANNOTATION: &str = "fabbrica.io/taints";

/// Every Node's selection view, by name. A copy shares the views: it costs a name and a pointer per
/// Node, not the labels.
pub type NodeMetas = HashMap<String, Arc<NodeMeta>>;

/// The facts of some Nodes, by name, shared with the projection: a copy costs a name and a
/// pointer per Node.
pub type Facts = HashMap<String, Arc<NodeFacts>>;

/// A Node as pool selection sees it. Its strings are interned: a gigafactory's Nodes share
/// nearly all their label keys and values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMeta {
    /// Every label of the Node.
    pub labels: Labels,
    /// The value of [`TAINTS_ANNOTATION`], if set.
    pub taint_record: Option<Sym>,
    /// Label keys fabbrica's field manager applied.
    pub owned_labels: Keys,
    /// Whether fabbrica's field manager applied [`TAINTS_ANNOTATION`].
    pub owns_taint_record: bool,
    /// Whether fabbrica's field manager owns `spec.taints` (an atomic list on Nodes).
    pub owns_taints: bool,
}

impl NodeMeta {
    /// Projects a Node's metadata.
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        let mut node = NodeMeta {
            labels: meta.labels.as_ref().map(Labels::from).unwrap_or_default(),
            taint_record: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(TAINTS_ANNOTATION))
                .map(|record| sym(record)),
            ..NodeMeta::default()
        };
        let ours = meta.managed_fields.iter().flatten().filter(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        });
        let mut owned_labels: Vec<String> = Vec::new();
        for entry in ours {
            let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
                continue;
            };
            let ownership = Ownership::of(fields);
            owned_labels.extend(ownership.labels);
            node.owns_taint_record |= ownership.taint_record;
            node.owns_taints |= ownership.taints;
        }
        node.owned_labels = owned_labels.iter().map(String::as_str).collect();
        node
    }
}

/// What one server-side-apply entry of fabbrica's (its `fieldsV1`) owns of a Node.
#[derive(Debug, Default)]
pub struct Ownership {
    /// Label keys.
    pub labels: Vec<String>,
    /// Whether [`TAINTS_ANNOTATION`] is among them.
    pub taint_record: bool,
    /// Whether `spec.taints` is.
    pub taints: bool,
}

impl Ownership {
    /// Reads a `fieldsV1` tree.
    pub fn of(fields: &serde_json::Value) -> Self {
        let metadata = fields.get("f:metadata");
        let labels = metadata
            .and_then(|m| m.get("f:labels"))
            .and_then(|l| l.as_object())
            .map(|owned| {
                owned
                    .keys()
                    .filter_map(|k| k.strip_prefix("f:"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let annotation = format!("f:{TAINTS_ANNOTATION}");
        Ownership {
            labels,
            taint_record: metadata
                .and_then(|m| m.get("f:annotations"))
                .and_then(|a| a.get(&annotation))
                .is_some(),
            taints: fields
                .get("f:spec")
                .and_then(|s| s.get("f:taints"))
                .is_some(),
        }
    }
}

/// What status and taint updates need of a managed Node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    /// The resourceVersion these facts were read at; taint updates use it as a precondition.
    pub resource_version: String,
    /// The Node's Ready condition is True.
    pub ready: bool,
    /// Allocatable `nvidia.com/gpu`.
    pub gpus: u64,
    /// The Node's taints, as the API server holds them.
    pub taints: Vec<Taint>,
}

impl NodeFacts {
    fn new<'a>(
        resource_version: Option<String>,
        mut conditions: impl Iterator<Item = (&'a str, &'a str)>,
        gpus: Option<&Quantity>,
        taints: Vec<Taint>,
    ) -> Self {
        NodeFacts {
            resource_version: resource_version.unwrap_or_default(),
            ready: conditions.any(|(type_, status)| type_ == "Ready" && status == "True"),
            gpus: gpus.and_then(|q| q.0.parse().ok()).unwrap_or(0),
            taints,
        }
    }

    /// Projects a full Node.
    pub fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        Self::new(
            node.resource_version(),
            conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str())),
            status
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get(labels::GPU_RESOURCE)),
            node.spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
        )
    }
}

/// A Node as the facts watch reads it: name, resourceVersion, taints, conditions and allocatable
/// resources. The parser skips everything else a Node carries (managed fields, the kubelet's image
/// list, addresses, system info) without allocating it, so a kubelet's status report costs the
/// operator a few small strings, not a full Node.
#[derive(Clone, Debug, Deserialize)]
pub struct FactsNode {
    #[serde(deserialize_with = "name_and_version")]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: FactsSpec,
    #[serde(default)]
    status: FactsStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct FactsSpec {
    #[serde(default)]
    taints: Option<Vec<Taint>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct FactsStatus {
    #[serde(default)]
    conditions: Option<Vec<FactsCondition>>,
    #[serde(default)]
    allocatable: Option<BTreeMap<String, Quantity>>,
}

#[derive(Clone, Debug, Deserialize)]
struct FactsCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// The name and resourceVersion of an object's metadata; the rest is skipped.
fn name_and_version<'de, D: Deserializer<'de>>(metadata: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct NameAndVersion {
        name: Option<String>,
        resource_version: Option<String>,
    }
    let slim = NameAndVersion::deserialize(metadata)?;
    Ok(ObjectMeta {
        name: slim.name,
        resource_version: slim.resource_version,
        ..ObjectMeta::default()
    })
}

/// Implements `kube::Resource` for a projection of Node (`$projection` with its `metadata`), so
/// a watch of it reads Nodes.
macro_rules! node_projection {
    ($projection:ty) => {
        impl kube::Resource for $projection {
            type DynamicType = ();
            type Scope = k8s_openapi::ClusterResourceScope;

            fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
                <k8s_openapi::api::core::v1::Node as kube::Resource>::kind(dt)
            }
            fn group(dt: &()) -> std::borrow::Cow<'_, str> {
                <k8s_openapi::api::core::v1::Node as kube::Resource>::group(dt)
            }
            fn version(dt: &()) -> std::borrow::Cow<'_, str> {
                <k8s_openapi::api::core::v1::Node as kube::Resource>::version(dt)
            }
            fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
                <k8s_openapi::api::core::v1::Node as kube::Resource>::plural(dt)
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use node_projection;

node_projection!(FactsNode);

impl From<FactsNode> for NodeFacts {
    fn from(node: FactsNode) -> Self {
        let conditions = node.status.conditions.unwrap_or_default();
        NodeFacts::new(
            node.metadata.resource_version,
            conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str())),
            node.status
                .allocatable
                .as_ref()
                .and_then(|a| a.get(labels::GPU_RESOURCE)),
            node.spec.taints.unwrap_or_default(),
        )
    }
}

/// What a reconcile reads of a projected item: a change that leaves it equal triggers nothing.
trait Significant {
    /// Whether a reconcile would see no difference between the two.
    fn same(&self, other: &Self) -> bool;
}

impl Significant for Arc<NodeMeta> {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl Significant for Arc<NodeFacts> {
    /// The resourceVersion is left out: a kubelet's status report changes it on every Node every
    /// few minutes, which at 12,500 Nodes would reconcile the Factories many times a second for
    /// nothing. It is still stored, for the next taint write's precondition.
    fn same(&self, other: &Self) -> bool {
        self.ready == other.ready && self.gpus == other.gpus && self.taints == other.taints
    }
}

/// A projection kept up to date from a watch stream.
#[derive(Debug)]
struct Projection<T> {
    items: HashMap<String, T>,
    building: HashMap<String, T>,
    synced: bool,
}

impl<T> Default for Projection<T> {
    fn default() -> Self {
        Self {
            items: HashMap::new(),
            building: HashMap::new(),
            synced: false,
        }
    }
}

impl<T: Significant> Projection<T> {
    /// Whether `item` differs, as a reconcile sees it, from what `items` holds for `name`.
    fn differs(items: &HashMap<String, T>, name: &str, item: &T) -> bool {
        items.get(name).is_none_or(|old| !old.same(item))
    }

    /// Applies one event; `true` when what the projection holds changed in a way a reconcile sees.
    fn apply(&mut self, event: Event<(String, T)>) -> bool {
        match event {
            Event::Apply((name, item)) => {
                let changed = Self::differs(&self.items, &name, &item);
                self.items.insert(name, item);
                changed
            }
            Event::Delete((name, _)) => self.items.remove(&name).is_some(),
            Event::Init => {
                self.building.clear();
                false
            }
            Event::InitApply((name, item)) => {
                self.building.insert(name, item);
                false
            }
            Event::InitDone => {
                let changed = !self.synced
                    || self.building.len() != self.items.len()
                    || self
                        .building
                        .iter()
                        .any(|(name, new)| Self::differs(&self.items, name, new));
                self.items = std::mem::take(&mut self.building);
                self.synced = true;
                changed
            }
        }
    }
}

/// The operator's view of Nodes, shared by its controllers.
#[derive(Debug, Default)]
pub struct NodeIndex {
    meta: RwLock<Projection<Arc<NodeMeta>>>,
    facts: RwLock<Projection<Arc<NodeFacts>>>,
}

impl NodeIndex {
    /// Whether both watches have listed every Node once.
    pub fn synced(&self) -> bool {
        self.meta.read().is_ok_and(|m| m.synced) && self.facts.read().is_ok_and(|f| f.synced)
    }

    /// A copy of every Node's selection view.
    pub fn metas(&self) -> NodeMetas {
        self.meta
            .read()
            .map(|m| m.items.clone())
            .unwrap_or_default()
    }

    /// The facts of the given Nodes (those fabbrica manages), shared with the projection.
    pub fn facts_of<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Facts {
        let Ok(facts) = self.facts.read() else {
            return HashMap::new();
        };
        names
            .into_iter()
            .filter_map(|n| facts.items.get(n).map(|f| (n.clone(), f.clone())))
            .collect()
    }

    /// Nodes in the selection view.
    pub fn len(&self) -> usize {
        self.meta.read().map(|m| m.items.len()).unwrap_or(0)
    }

    /// Whether no Node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records the operator's own write of a Node, so the next reconcile reads its writes without
    /// waiting for the watches (whose events for the write then change nothing and trigger nothing).
    /// `written` is the Node's metadata as the API server returned it; `facts` what the write left
    /// of its facts (the facts it was planned from, with the written taints and the new
    /// resourceVersion), or `None` when they are not known: the facts watch brings them then.
    pub fn record_write(&self, written: &ObjectMeta, facts: Option<NodeFacts>) {
        let name = written.name.clone().unwrap_or_default();
        let labelled = written
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(labels::FACTORY));
        if let Ok(mut meta) = self.meta.write() {
            meta.apply(Event::Apply((
                name.clone(),
                Arc::new(NodeMeta::from_meta(written)),
            )));
        }
        if let Ok(mut projection) = self.facts.write() {
            if !labelled {
                projection.items.remove(&name);
            } else if let Some(facts) = facts {
                projection.apply(Event::Apply((name, Arc::new(facts))));
            }
        }
    }

    fn apply_meta(&self, event: Event<MetaNode>) -> bool {
        let Ok(mut projection) = self.meta.write() else {
            return false;
        };
        // A view that says what the one held says is the one held: nothing is interned, and
        // the comparison that decides whether to reconcile is a pointer comparison.
        let event = map_event(event, |m| {
            let name = m.name_any();
            let view = m.view_over(projection.items.get(&name));
            (name, view)
        });
        projection.apply(event)
    }

    fn apply_facts(&self, event: Event<FactsNode>) -> bool {
        let event = map_event(event, |n| (n.name_any(), Arc::new(NodeFacts::from(n))));
        self.facts.write().is_ok_and(|mut p| p.apply(event))
    }
}

fn map_event<A, B>(event: Event<A>, f: impl Fn(A) -> B) -> Event<B> {
    match event {
        Event::Apply(a) => Event::Apply(f(a)),
        Event::Delete(a) => Event::Delete(f(a)),
        Event::Init => Event::Init,
        Event::InitApply(a) => Event::InitApply(f(a)),
        Event::InitDone => Event::InitDone,
    }
}

async fn drive<K, S>(
    stream: S,
    index: Arc<NodeIndex>,
    trigger: UnboundedSender<()>,
    apply: fn(&NodeIndex, Event<K>) -> bool,
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                if apply(&index, event) && trigger.unbounded_send(()).is_err() {
                    return;
                }
            }
            Err(err) => tracing::warn!(error = %err, "node watch failed; retrying with backoff"),
        }
    }
}

/// Nodes per page of the selection watch's list. A page is parsed whole, managed fields and all
/// (about 30 KiB a Node); at the 500 of kube's default a page was most of the operator's peak heap.
const META_PAGE: u32 = 100;

/// Starts both Node watches; every change of the projection sends a unit on `trigger`.
pub fn spawn_watches(
    client: Client,
    index: Arc<NodeIndex>,
    trigger: UnboundedSender<()>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let metas = watch(
        Api::<MetaNode>::all(node_metadata_client(client.clone())),
        watcher::Config::default().page_size(META_PAGE),
    )
    .default_backoff();
    let facts = watch(
        Api::<FactsNode>::all(client),
        watcher::Config::default().labels(labels::FACTORY),
    )
    .default_backoff();
    vec![
        tokio::spawn(drive(
            metas,
            index.clone(),
            trigger.clone(),
            NodeIndex::apply_meta,
        )),
        tokio::spawn(drive(facts, index, trigger, NodeIndex::apply_facts)),
    ]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use kube::Resource;

    use super::*;

    #[test]
    fn selection_view_reads_only_fabbricas_own_managed_fields() {
        let fields = |v: serde_json::Value| Some(FieldsV1(v));
        let meta = ObjectMeta {
            name: Some("n1".into()),
            labels: Some(
                [
                    ("a".to_owned(), "b".to_owned()),
                    (labels::POOL.to_owned(), "p".to_owned()),
                ]
                .into(),
            ),
            managed_fields: Some(vec![
                ManagedFieldsEntry {
                    manager: Some(FIELD_MANAGER.into()),
                    operation: Some("Apply".into()),
                    fields_v1: fields(serde_json::json!({
                        "f:metadata": {"f:labels": {"f:fabbrica.io/pool": {}}, "f:annotations": {"f:fabbrica.io/taints": {}}},
                        "f:spec": {"f:taints": {}}
                    })),
                    ..ManagedFieldsEntry::default()
                },
                ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    operation: Some("Update".into()),
                    fields_v1: fields(serde_json::json!({"f:metadata": {"f:labels": {"f:a": {}}}})),
                    ..ManagedFieldsEntry::default()
                },
            ]),
            ..ObjectMeta::default()
        };
        let node = NodeMeta::from_meta(&meta);
        assert_eq!(node.owned_labels.iter().collect::<Vec<_>>(), [labels::POOL]);
        assert!(node.owns_taints && node.owns_taint_record);
        assert_eq!(node.labels.len(), 2);
    }

    impl Significant for u32 {
        fn same(&self, other: &Self) -> bool {
            self == other
        }
    }

    #[test]
    fn a_status_report_that_changes_only_the_resource_version_triggers_nothing() {
        let mut p = Projection::<Arc<NodeFacts>>::default();
        let facts = |rv: &str, ready: bool| {
            Arc::new(NodeFacts {
                resource_version: rv.into(),
                ready,
                gpus: 8,
                taints: Vec::new(),
            })
        };
        assert!(p.apply(Event::Apply(("n".into(), facts("1", true)))));
        assert!(!p.apply(Event::Apply(("n".into(), facts("2", true)))));
        // Stored all the same: the next taint write's precondition is the newest version.
        assert_eq!(p.items["n"].resource_version, "2");
        assert!(p.apply(Event::Apply(("n".into(), facts("3", false)))));
    }

    #[test]
    fn a_relist_with_nothing_new_is_no_change() {
        let mut p = Projection::<u32>::default();
        let list = |p: &mut Projection<u32>| {
            p.apply(Event::Init);
            p.apply(Event::InitApply(("a".into(), 1)));
            p.apply(Event::InitDone)
        };
        assert!(list(&mut p));
        assert!(!list(&mut p));
        assert!(!p.apply(Event::Apply(("a".into(), 1))));
        assert!(p.apply(Event::Apply(("a".into(), 2))));
        assert!(p.apply(Event::Delete(("a".into(), 0))));
    }

    #[test]
    fn the_facts_watch_reads_what_a_full_node_says_and_nothing_more() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "gpu-1", "resourceVersion": "42", "labels": {"a": "b"},
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "fieldsV1": {"f:status": {"f:images": {}}}}]},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
            "status": {
                "allocatable": {"cpu": "224", (labels::GPU_RESOURCE): "8"},
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "images": [{"names": ["nvcr.io/nvidia/pytorch:24.05-py3"], "sizeBytes": 9_000_000_000_u64}],
                "nodeInfo": {"kubeletVersion": "v1.33.0"}},
        });
        let full: Node = serde_json::from_value(json.clone()).expect("a Node");
        let slim: FactsNode = serde_json::from_value(json).expect("a FactsNode");
        assert_eq!(slim.name_any(), "gpu-1");
        assert_eq!(
            slim.meta().managed_fields,
            None,
            "managed fields are skipped"
        );
        let facts = NodeFacts::from(slim);
        assert_eq!(facts, NodeFacts::from_node(&full));
        assert!(facts.ready && facts.gpus == 8 && facts.taints.len() == 1);
        assert_eq!(facts.resource_version, "42");

        // A Node the kubelet has not reported on yet: no status, no taints.
        let bare: FactsNode =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "new"}})).expect("bare");
        let facts = NodeFacts::from(bare);
        assert!(!facts.ready && facts.gpus == 0 && facts.taints.is_empty());
    }

    #[test]
    fn the_operators_own_write_is_known_at_once_and_its_watch_event_changes_nothing() {
        let index = NodeIndex::default();
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gpu-1", "resourceVersion": "7",
                "labels": {(labels::FACTORY): "f", (labels::POOL): "train"}},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        }))
        .expect("a Node");
        index.record_write(&node.metadata, Some(NodeFacts::from_node(&node)));
        let facts = index.facts_of([&"gpu-1".to_owned()]);
        assert_eq!(facts["gpu-1"].resource_version, "7");
        assert_eq!(facts["gpu-1"].taints.len(), 1);
        assert_eq!(&index.metas()["gpu-1"].labels[labels::POOL], "train");
        let watched: FactsNode =
            serde_json::from_value(serde_json::to_value(&node).expect("json")).expect("facts");
        assert!(!index.apply_facts(Event::Apply(watched)));
        let watched: MetaNode = serde_json::from_value(serde_json::json!({
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": serde_json::to_value(&node.metadata).expect("json"),
        }))
        .expect("metadata");
        assert!(!index.apply_meta(Event::Apply(watched)));

        // Released: no longer fabbrica's, so no longer among the Nodes with facts.
        node.metadata.labels = None;
        index.record_write(&node.metadata, None);
        assert!(index.facts_of([&"gpu-1".to_owned()]).is_empty());
    }
}
