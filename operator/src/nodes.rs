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
//!   status to the operator, and the full objects are dropped as soon as they are projected.
//!
//! Every change of the projection (not every event: a kubelet heartbeat that changes nothing fabbrica
//! reads is ignored) sends a trigger that reconciles the Factories.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use fabbrica_crds::labels;
use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, ResourceExt};

use crate::FIELD_MANAGER;

/// Annotation recording the taints fabbrica put on a Node (`key=value:Effect,...`), so that it
/// removes exactly those and never a taint someone else set.
pub const TAINTS_ANNOTATION: &str = "fabbrica.io/taints";

/// Every Node's selection view, by name. A copy shares the views: it costs a name and a pointer per
/// Node, not the labels.
pub type NodeMetas = HashMap<String, Arc<NodeMeta>>;

/// A Node as pool selection sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMeta {
    /// Every label of the Node.
    pub labels: BTreeMap<String, String>,
    /// The value of [`TAINTS_ANNOTATION`], if set.
    pub taint_record: Option<String>,
    /// Label keys fabbrica's field manager applied.
    pub owned_labels: BTreeSet<String>,
    /// Whether fabbrica's field manager applied [`TAINTS_ANNOTATION`].
    pub owns_taint_record: bool,
    /// Whether fabbrica's field manager owns `spec.taints` (an atomic list on Nodes).
    pub owns_taints: bool,
}

impl NodeMeta {
    /// Projects a Node's metadata.
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        let mut node = NodeMeta {
            labels: meta.labels.clone().unwrap_or_default(),
            taint_record: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(TAINTS_ANNOTATION))
                .cloned(),
            ..NodeMeta::default()
        };
        let ours = meta.managed_fields.iter().flatten().filter(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        });
        for entry in ours {
            let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
                continue;
            };
            let metadata = fields.get("f:metadata");
            if let Some(owned) = metadata
                .and_then(|m| m.get("f:labels"))
                .and_then(|l| l.as_object())
            {
                node.owned_labels.extend(
                    owned
                        .keys()
                        .filter_map(|k| k.strip_prefix("f:"))
                        .map(str::to_owned),
                );
            }
            let annotation = format!("f:{TAINTS_ANNOTATION}");
            node.owns_taint_record |= metadata
                .and_then(|m| m.get("f:annotations"))
                .and_then(|a| a.get(&annotation))
                .is_some();
            node.owns_taints |= fields
                .get("f:spec")
                .and_then(|s| s.get("f:taints"))
                .is_some();
        }
        node
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
    /// Projects a full Node.
    pub fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let gpus = status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(labels::GPU_RESOURCE))
            .and_then(|q| q.0.parse::<u64>().ok())
            .unwrap_or(0);
        NodeFacts {
            resource_version: node.resource_version().unwrap_or_default(),
            ready,
            gpus,
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
        }
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

impl Significant for NodeFacts {
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
    facts: RwLock<Projection<NodeFacts>>,
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

    /// The facts of the given Nodes (those fabbrica manages).
    pub fn facts_of<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> HashMap<String, NodeFacts> {
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
                projection.apply(Event::Apply((name, facts)));
            }
        }
    }

    fn apply_meta(&self, event: Event<PartialObjectMeta<Node>>) -> bool {
        let event = map_event(event, |m| {
            (m.name_any(), Arc::new(NodeMeta::from_meta(&m.metadata)))
        });
        self.meta.write().is_ok_and(|mut p| p.apply(event))
    }

    fn apply_facts(&self, event: Event<Node>) -> bool {
        let event = map_event(event, |n| (n.name_any(), NodeFacts::from_node(&n)));
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

/// Starts both Node watches; every change of the projection sends a unit on `trigger`.
pub fn spawn_watches(
    client: Client,
    index: Arc<NodeIndex>,
    trigger: UnboundedSender<()>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let metas = watch(
        Api::<PartialObjectMeta<Node>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let facts = watch(
        Api::<Node>::all(client),
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
        assert_eq!(node.owned_labels, BTreeSet::from([labels::POOL.to_owned()]));
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
        let mut p = Projection::<NodeFacts>::default();
        let facts = |rv: &str, ready: bool| NodeFacts {
            resource_version: rv.into(),
            ready,
            gpus: 8,
            taints: Vec::new(),
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
        assert_eq!(index.metas()["gpu-1"].labels[labels::POOL], "train");
        assert!(!index.apply_facts(Event::Apply(node.clone())));
        assert!(!index.apply_meta(Event::Apply(PartialObjectMeta {
            types: None,
            metadata: node.metadata.clone(),
            _phantom: std::marker::PhantomData,
        })));

        // Released: no longer fabbrica's, so no longer among the Nodes with facts.
        node.metadata.labels = None;
        index.record_write(&node.metadata, None);
        assert!(index.facts_of([&"gpu-1".to_owned()]).is_empty());
    }
}
