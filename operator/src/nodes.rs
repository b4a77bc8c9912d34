//! What the operator knows of Nodes, without caching a single full Node object.
//!
//! One watch over every Node feeds two compact projections, each report parsed once
//! ([`WatchedNode`] skips all but what the two need, so no full Node is ever built):
//!
//! - **Selection**: each Node's labels, fabbrica's own annotation and which fields fabbrica's field
//!   manager owns (read from that manager's managedFields entry; every other entry is skipped).
//!   Pools select Nodes from this, on any Node of the cluster, at a few hundred bytes a Node.
//! - **Facts**: each Node's readiness, allocatable GPUs, taints and resourceVersion. Status needs
//!   the first two and safe taint updates need the last two. They are kept for every Node, so a
//!   pool that takes Nodes writes them at once, with the resourceVersion the watch saw last,
//!   instead of listing them first (a list of many pages is one snapshot: by its last page a
//!   heartbeat has changed most Nodes, and each write from it would meet a conflict).
//!
//! The watch is read in gathers: all that has arrived, then a rest (see `REST` and `BACKLOG`: short
//! enough that events do not pile up at the API server). A gather in
//! which the selection changed, or a managed Node's facts did (not every event: a kubelet
//! heartbeat that changes nothing fabbrica reads is ignored), sends one trigger that reconciles
//! the Factories.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use fabbrica_crds::labels;
use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, Resource, ResourceExt};

use crate::FIELD_MANAGER;
use crate::interned::{Keys, Labels, Sym, Taints, sym};
use crate::watched::WatchedNode;

/// Annotation recording the taints fabbrica put on a Node (`key=value:Effect,...`), so that it
/// removes exactly those and never a taint someone else set.
pub const TAINTS_ANNOTATION: &str = "fabbrica.io/taints";

/// A Node's name, shared: the projections, a reconcile's copy of them and its assignment hold one
/// allocation of each name between them, and copying it is a count.
pub type NodeName = Arc<str>;

/// Every Node's selection view, by name. A copy shares the names and the views: it costs two
/// pointers per Node.
pub type NodeMetas = HashMap<NodeName, Arc<NodeMeta>>;

/// The facts of some Nodes, by name, shared with the projection: a copy costs two pointers per
/// Node.
pub type Facts = HashMap<NodeName, Arc<NodeFacts>>;

/// A Node as pool selection sees it. Its strings are interned: a gigafactory's Nodes share
/// nearly all their label keys and values. Two views are equal when they say the same,
/// whatever they were read from.
#[derive(Clone, Debug, Default)]
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
    /// A digest of the text of the watch report this view was read from (0 for a view built
    /// otherwise): a report with the same digest says the same, and is not read further.
    pub digest: u64,
}

impl PartialEq for NodeMeta {
    fn eq(&self, other: &Self) -> bool {
        self.labels == other.labels
            && self.taint_record == other.taint_record
            && self.owned_labels == other.owned_labels
            && self.owns_taint_record == other.owns_taint_record
            && self.owns_taints == other.owns_taints
    }
}

impl Eq for NodeMeta {}

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
        node.own(
            meta.managed_fields
                .iter()
                .flatten()
                .filter(|m| {
                    m.manager.as_deref() == Some(FIELD_MANAGER)
                        && m.operation.as_deref() == Some("Apply")
                })
                .filter_map(|entry| entry.fields_v1.as_ref().map(|f| &f.0)),
        );
        node
    }

    /// Records what fabbrica's own server-side-apply entries (their `fieldsV1`) own of the Node.
    pub(crate) fn own<'a>(&mut self, ours: impl IntoIterator<Item = &'a serde_json::Value>) {
        let mut owned_labels: Vec<String> = Vec::new();
        for fields in ours {
            let ownership = Ownership::of(fields);
            owned_labels.extend(ownership.labels);
            self.owns_taint_record |= ownership.taint_record;
            self.owns_taints |= ownership.taints;
        }
        self.owned_labels = owned_labels.iter().map(String::as_str).collect();
    }
}

/// What one server-side-apply entry of fabbrica's (its `fieldsV1`) owns of a Node.
#[derive(Debug, Default)]
struct Ownership {
    /// Label keys.
    labels: Vec<String>,
    /// Whether [`TAINTS_ANNOTATION`] is among them.
    taint_record: bool,
    /// Whether `spec.taints` is.
    taints: bool,
}

impl Ownership {
    /// Reads a `fieldsV1` tree.
    fn of(fields: &serde_json::Value) -> Self {
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

/// What status and taint updates need of a Node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    /// The resourceVersion these facts were read at; taint updates use it as a precondition.
    pub resource_version: String,
    /// The Node's Ready condition is True.
    pub ready: bool,
    /// Allocatable `nvidia.com/gpu`.
    pub gpus: u64,
    /// The Node's taints, as the API server holds them.
    pub taints: Taints,
}

impl NodeFacts {
    /// Projects a full Node.
    pub fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        NodeFacts {
            resource_version: node.resource_version().unwrap_or_default(),
            ready: status
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            gpus: status
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get(labels::GPU_RESOURCE))
                .and_then(|q| q.0.parse().ok())
                .unwrap_or(0),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into(),
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
    items: HashMap<NodeName, T>,
    building: HashMap<NodeName, T>,
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
    /// `name` as the projection holds it (a count, not a copy), or a new one.
    fn name(&self, name: &str) -> NodeName {
        self.items
            .get_key_value(name)
            .or_else(|| self.building.get_key_value(name))
            .map_or_else(|| Arc::from(name), |(held, _)| held.clone())
    }

    /// Whether `item` differs, as a reconcile sees it, from what `items` holds for `name`.
    fn differs(items: &HashMap<NodeName, T>, name: &str, item: &T) -> bool {
        items.get(name).is_none_or(|old| !old.same(item))
    }

    /// Applies one event; `true` when what the projection holds changed in a way a reconcile sees.
    fn apply(&mut self, event: Event<(NodeName, T)>) -> bool {
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
    /// The operator's writes whose watch event has not come yet: each Node's resourceVersion after
    /// the write. Until then the watch may still bring reports from before the write (on their way
    /// as it was made, or held in a gather's rest); they say less than the write did and are
    /// skipped, so a reconcile never plans from facts older than its own writes.
    written: Mutex<HashMap<NodeName, u64>>,
}

impl NodeIndex {
    /// Whether the Node watch has listed every Node once.
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

    /// The facts of the given Nodes, shared with the projection.
    pub fn facts_of<'a, N>(&self, names: impl IntoIterator<Item = &'a N>) -> Facts
    where
        N: AsRef<str> + ?Sized + 'a,
    {
        let Ok(facts) = self.facts.read() else {
            return HashMap::new();
        };
        names
            .into_iter()
            .filter_map(|n| facts.items.get_key_value(n.as_ref()))
            .map(|(name, f)| (name.clone(), f.clone()))
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
    /// resourceVersion), or `None` when they are not known: the Node watch brings them then.
    pub fn record_write(&self, written: &ObjectMeta, facts: Option<NodeFacts>) {
        let Ok(mut meta) = self.meta.write() else {
            return;
        };
        let name = meta.name(written.name.as_deref().unwrap_or_default());
        meta.apply(Event::Apply((
            name.clone(),
            Arc::new(NodeMeta::from_meta(written)),
        )));
        drop(meta);
        if let (Some(version), Ok(mut written)) = (
            written
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok()),
            self.written.lock(),
        ) {
            written.insert(name.clone(), version);
        }
        if let (Some(facts), Ok(mut projection)) = (facts, self.facts.write()) {
            projection.apply(Event::Apply((name, Arc::new(facts))));
        }
    }

    /// Whether `node` is a report from before the operator's last write of it. A report from the
    /// write or after it ends the wait for one. resourceVersions that are not integers (etcd's
    /// are) are never compared.
    fn predates_write(&self, node: &WatchedNode) -> bool {
        let Ok(mut written) = self.written.lock() else {
            return false;
        };
        let Some(&floor) = written.get(node.name()) else {
            return false;
        };
        let version = node.meta().resource_version.as_deref();
        match version.and_then(|v| v.parse::<u64>().ok()) {
            Some(version) if version < floor => true,
            _ => {
                written.remove(node.name());
                false
            }
        }
    }

    /// Applies one event of the Node watch to both projections; `true` when either changed in a
    /// way a reconcile sees. The facts of a Node no Factory manages are kept (a pool that takes
    /// it writes its taints from them) but their changes trigger nothing.
    pub fn apply(&self, event: Event<WatchedNode>) -> bool {
        match &event {
            Event::Apply(node) if self.predates_write(node) => return false,
            Event::Delete(node) => {
                if let Ok(mut written) = self.written.lock() {
                    written.remove(node.name());
                }
            }
            _ => {}
        }
        let (Ok(mut meta), Ok(mut facts)) = (self.meta.write(), self.facts.write()) else {
            return false;
        };
        // A view that says what the one held says is the one held: nothing is read or interned,
        // and the comparison that decides whether to reconcile is a pointer comparison.
        let read = |mut node: WatchedNode| {
            let name = meta.name(node.name());
            let view = node.view_over(meta.items.get(&name));
            let managed = view.labels.contains_key(labels::FACTORY);
            let node_facts = Arc::new(node.take_facts());
            (managed, (name.clone(), view), (name, node_facts))
        };
        let (managed, meta_event, facts_event) = match event {
            Event::Apply(node) => {
                let (managed, view, node_facts) = read(node);
                (managed, Event::Apply(view), Event::Apply(node_facts))
            }
            Event::InitApply(node) => {
                let (managed, view, node_facts) = read(node);
                (
                    managed,
                    Event::InitApply(view),
                    Event::InitApply(node_facts),
                )
            }
            Event::Delete(node) => {
                let name = meta.name(node.name());
                let gone = Event::Delete((name.clone(), Arc::default()));
                (false, gone, Event::Delete((name, Arc::default())))
            }
            Event::Init => (false, Event::Init, Event::Init),
            // A relist that found changed facts may have missed any event: reconcile.
            Event::InitDone => (true, Event::InitDone, Event::InitDone),
        };
        let meta_changed = meta.apply(meta_event);
        let facts_changed = facts.apply(facts_event);
        meta_changed || (facts_changed && managed)
    }

    /// A Node's selection view and facts as the watch and the operator's own writes left them,
    /// for a write planned just before it is sent.
    pub fn node(&self, name: &str) -> Option<(Arc<NodeMeta>, Option<Arc<NodeFacts>>)> {
        let meta = self.meta.read().ok()?.items.get(name).cloned()?;
        let facts = self.facts.read().ok()?.items.get(name).cloned();
        Some((meta, facts))
    }
}

/// The longest the Node watch rests after a gather. While it rests, reports wait in the
/// connection's buffers, and the next gather reads them with a few wakeups, reads and decryptions
/// instead of one of each for every report: at a gigafactory's rate of status reports, those
/// per-report costs, not the parsing, were most of the operator's steady-state CPU. A change shows
/// that much later.
const REST: Duration = Duration::from_millis(100);

/// About how many events may wait for the watch while it rests. The API server holds a watch's
/// unread events in a short queue, and when that queue is full it waits for the reader, from a
/// budget it shares with every other watch (50 ms a second); a watch still full when the budget is
/// spent is closed, whoever's it is. A rest that let events pile up would draw on that budget,
/// which other clients' watches need (kwok, which simulates the kubelets of the benchmark, lists
/// every Node again each time its watch is closed). So the rest is as long as about this many
/// events take to come, at the rate the last gather saw, and never longer than [`REST`].
const BACKLOG: u32 = 8;

/// The rest after a gather of `gathered` events that came during a rest of `rested` (and the
/// gather itself): as long as [`BACKLOG`] events take at that rate, at most [`REST`].
fn next_rest(rested: Duration, gathered: u32) -> Duration {
    (rested * BACKLOG / gathered.max(1)).min(REST)
}

/// A gather goes on while the next event comes within this: a gather ends only when it has read
/// everything that had arrived, so the watch never falls behind the reports however many come.
const GAP: Duration = Duration::from_millis(1);

/// Applies the Node watch to `index` in gathers: every event that has arrived, then one trigger if
/// any of them changed what a reconcile sees, then a rest (see [`next_rest`]; none while listing: a
/// list's pages come as fast as the API server serves them).
async fn drive(
    stream: impl Stream<Item = Result<Event<WatchedNode>, watcher::Error>>,
    index: Arc<NodeIndex>,
    trigger: UnboundedSender<()>,
) {
    let mut stream = std::pin::pin!(stream);
    let mut listing = false;
    let mut ended = false;
    let mut rest = REST;
    while let Some(first) = stream.next().await {
        let mut changed = false;
        let mut gathered = 0;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            gathered += 1;
            match event {
                Ok(event) => {
                    listing = matches!(event, Event::Init | Event::InitApply(_));
                    changed |= index.apply(event);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "node watch failed; retrying with backoff")
                }
            }
            next = match tokio::time::timeout(GAP, stream.next()).await {
                Ok(Some(event)) => Some(event),
                Ok(None) => {
                    ended = true;
                    None
                }
                Err(_) => None,
            };
        }
        if (changed && trigger.unbounded_send(()).is_err()) || ended {
            return;
        }
        if !listing {
            rest = next_rest(rest, gathered);
            tokio::time::sleep(rest).await;
        }
    }
}

/// Nodes per page of the Node watch's list. A page is parsed whole (a real Node is tens of KiB of
/// JSON); at the 500 of kube's default a page was most of the operator's peak heap. (A streaming
/// list, one Node at a time, listed 25,000 Nodes about as fast and peaked no lower, but Kubernetes
/// 1.33, and any API server with the `WatchList` feature off, refuses it, and kube's watcher does
/// not fall back to a list: docs/BENCHMARKS.md.)
const PAGE: u32 = 100;

/// Starts the Node watch; every change of the projection sends a unit on `trigger`.
pub fn spawn_watch(
    client: Client,
    index: Arc<NodeIndex>,
    trigger: UnboundedSender<()>,
) -> tokio::task::JoinHandle<()> {
    let nodes = watch(
        Api::<WatchedNode>::all(client),
        watcher::Config::default().page_size(PAGE),
    )
    .default_backoff();
    tokio::spawn(drive(nodes, index, trigger))
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
                taints: Taints::default(),
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

    /// A full Node as a kubelet reports it, in pool `train` of Factory `eu` when `managed`.
    fn reported_node(managed: bool) -> serde_json::Value {
        let labels = if managed {
            serde_json::json!({"a": "b", (labels::FACTORY): "eu", (labels::POOL): "train"})
        } else {
            serde_json::json!({"a": "b"})
        };
        serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "gpu-1", "resourceVersion": "42", "labels": labels,
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
        })
    }

    #[test]
    fn one_parse_of_a_reported_node_gives_both_views_and_nothing_more() {
        let json = reported_node(true);
        let full: Node = serde_json::from_value(json.clone()).expect("a Node");
        let mut slim: WatchedNode = serde_json::from_value(json).expect("a WatchedNode");
        assert_eq!(slim.name_any(), "gpu-1");
        assert_eq!(
            slim.meta().managed_fields,
            None,
            "managed fields are skipped"
        );
        assert_eq!(slim.view(), NodeMeta::from_meta(&full.metadata));
        let facts = slim.take_facts();
        assert_eq!(facts, NodeFacts::from_node(&full));
        assert!(facts.ready && facts.gpus == 8 && facts.taints.len() == 1);
        assert_eq!(facts.resource_version, "42");

        assert!(slim.view().labels.contains_key(labels::FACTORY));

        // Not fabbrica's yet: its facts are read all the same, for the pool that takes it.
        let mut other: WatchedNode =
            serde_json::from_value(reported_node(false)).expect("a WatchedNode");
        assert!(!other.view().labels.contains_key(labels::FACTORY));
        assert_eq!(other.take_facts(), facts);

        // A Node the kubelet has not reported on yet: no status, no taints.
        let mut bare: WatchedNode = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "new", "labels": {(labels::FACTORY): "eu"}},
            "status": {"conditions": null, "allocatable": null}}))
        .expect("bare");
        let facts = bare.take_facts();
        assert!(!facts.ready && facts.gpus == 0 && facts.taints.is_empty());
    }

    #[test]
    fn only_a_managed_nodes_facts_trigger_and_a_report_triggers_nothing() {
        let index = NodeIndex::default();
        let parse = |v: serde_json::Value| -> WatchedNode { serde_json::from_value(v).unwrap() };
        assert!(!index.apply(Event::Init));
        assert!(!index.apply(Event::InitApply(parse(reported_node(true)))));
        assert!(!index.synced());
        assert!(index.apply(Event::InitDone));
        assert!(index.synced());
        let name = "gpu-1";
        assert_eq!(index.facts_of([name])[name].gpus, 8);
        // A status report: a new resourceVersion, nothing else.
        let mut report = reported_node(true);
        report["metadata"]["resourceVersion"] = serde_json::json!("43");
        assert!(!index.apply(Event::Apply(parse(report))));
        assert_eq!(index.facts_of([name])[name].resource_version, "43");
        // A lost GPU is a change.
        let mut lost = reported_node(true);
        lost["status"]["allocatable"][labels::GPU_RESOURCE] = serde_json::json!("7");
        assert!(index.apply(Event::Apply(parse(lost))));
        // Released: still selectable, its facts kept and up to date, their changes no trigger.
        assert!(index.apply(Event::Apply(parse(reported_node(false)))));
        assert_eq!(index.metas()[name].labels.get(labels::FACTORY), None);
        assert_eq!(index.facts_of([name])[name].gpus, 8);
        let mut lost = reported_node(false);
        lost["status"]["allocatable"][labels::GPU_RESOURCE] = serde_json::json!("7");
        assert!(!index.apply(Event::Apply(parse(lost.clone()))));
        assert_eq!(index.facts_of([name])[name].gpus, 7);
        // A relist that finds changed facts reconciles: it may have missed any event.
        assert!(!index.apply(Event::Init));
        assert!(!index.apply(Event::InitApply(parse(reported_node(false)))));
        assert!(index.apply(Event::InitDone));
        assert_eq!(index.facts_of([name])[name].gpus, 8);
        assert!(index.apply(Event::Delete(parse(reported_node(false)))));
        assert!(index.facts_of([name]).is_empty());
        assert!(index.is_empty());
    }

    /// A report of `reported_node(true)` at `version`, with `gpus` allocatable.
    fn report(version: u64, gpus: u64) -> WatchedNode {
        let mut node = reported_node(true);
        node["metadata"]["resourceVersion"] = serde_json::json!(version.to_string());
        node["status"]["allocatable"][labels::GPU_RESOURCE] = serde_json::json!(gpus.to_string());
        serde_json::from_value(node).expect("a WatchedNode")
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_reads_what_arrived_in_one_gather_then_rests() {
        let index = Arc::new(NodeIndex::default());
        let (events, stream) = futures::channel::mpsc::unbounded();
        let (trigger, mut triggers) = futures::channel::mpsc::unbounded();
        let send = |event| events.unbounded_send(Ok(event)).expect("drive is reading");
        let gpus = |index: &NodeIndex| index.facts_of(["gpu-1"])["gpu-1"].gpus;
        tokio::spawn(drive(stream, index.clone(), trigger));
        let start = tokio::time::Instant::now();

        // A list's pages come apart; no rest between them.
        send(Event::Init);
        send(Event::InitApply(report(1, 8)));
        tokio::time::sleep(GAP * 5).await;
        send(Event::InitDone);
        triggers.next().await.expect("the list triggers");
        assert!(start.elapsed() < REST, "a list is read without rests");

        // Three reports at once: one gather, one trigger, the newest facts.
        for (version, n) in [(2, 7), (3, 6), (4, 5)] {
            send(Event::Apply(report(version, n)));
        }
        triggers.next().await.expect("a trigger");
        assert_eq!(gpus(&index), 5);
        assert!(triggers.try_recv().is_err(), "one trigger for the gather");

        // A report that comes during the rest is read after it.
        let rested = tokio::time::Instant::now();
        send(Event::Apply(report(5, 4)));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gpus(&index), 5, "resting");
        triggers.next().await.expect("a trigger");
        assert_eq!(gpus(&index), 4);
        assert!(rested.elapsed() >= REST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_watch_rests_less_so_its_reports_never_pile_up() {
        let index = Arc::new(NodeIndex::default());
        let (events, stream) = futures::channel::mpsc::unbounded();
        let (trigger, mut triggers) = futures::channel::mpsc::unbounded();
        let send = |version, gpus| {
            events
                .unbounded_send(Ok(Event::Apply(report(version, gpus))))
                .expect("drive is reading")
        };
        tokio::spawn(drive(stream, index.clone(), trigger));
        events.unbounded_send(Ok(Event::Init)).expect("reading");
        events.unbounded_send(Ok(Event::InitDone)).expect("reading");
        triggers.next().await.expect("the list triggers");

        // One report: the full rest follows.
        send(1, 8);
        triggers.next().await.expect("a trigger");
        // Forty come during it: a burst five times the backlog, so the next rest is a fifth.
        for version in 2..42 {
            send(version, 7);
        }
        triggers.next().await.expect("a trigger");
        let rested = tokio::time::Instant::now();
        send(42, 6);
        triggers.next().await.expect("a trigger");
        assert!(
            rested.elapsed() <= REST / 5 + GAP * 2,
            "after a burst the rest is short: {:?}",
            rested.elapsed()
        );
        // A quiet gather again: the rest grows back, never beyond REST.
        let rested = tokio::time::Instant::now();
        send(43, 5);
        triggers.next().await.expect("a trigger");
        assert!(rested.elapsed() >= REST && rested.elapsed() <= REST + GAP * 2);
        assert_eq!(index.facts_of(["gpu-1"])["gpu-1"].gpus, 5);
    }

    #[test]
    fn a_report_from_before_the_operators_own_write_is_skipped() {
        let index = NodeIndex::default();
        index.apply(Event::Init);
        index.apply(Event::InitApply(report(10, 8)));
        index.apply(Event::InitDone);
        // The operator takes the Node out of its pool, at resourceVersion 12.
        let mut released = reported_node(false);
        released["metadata"]["resourceVersion"] = serde_json::json!("12");
        let released: Node = serde_json::from_value(released).expect("a Node");
        index.record_write(&released.metadata, Some(NodeFacts::from_node(&released)));
        // A status report from before the write (11) still says the Node is in the pool.
        assert!(!index.apply(Event::Apply(report(11, 8))));
        assert_eq!(index.metas()["gpu-1"].labels.get(labels::POOL), None);
        assert_eq!(index.facts_of(["gpu-1"])["gpu-1"].resource_version, "12");
        // The write's own event, and every report after it, are read.
        let mut echo = reported_node(false);
        echo["metadata"]["resourceVersion"] = serde_json::json!("12");
        index.apply(Event::Apply(
            serde_json::from_value(echo).expect("a WatchedNode"),
        ));
        assert!(index.apply(Event::Apply(report(13, 8))));
        assert_eq!(&index.metas()["gpu-1"].labels[labels::POOL], "train");
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
        let facts = index.facts_of(["gpu-1"]);
        assert_eq!(facts["gpu-1"].resource_version, "7");
        assert_eq!(facts["gpu-1"].taints.len(), 1);
        assert_eq!(&index.metas()["gpu-1"].labels[labels::POOL], "train");
        let report = serde_json::to_value(&node).expect("json");
        let watched: WatchedNode = serde_json::from_value(report.clone()).expect("a Node");
        assert!(!index.apply(Event::Apply(watched)));
        // The view read from that report is held from then on: the next report that says the
        // same is not read again.
        let held = index.metas()["gpu-1"].clone();
        assert_ne!(held.digest, 0);
        let again: WatchedNode = serde_json::from_value(report).expect("a Node");
        assert!(!index.apply(Event::Apply(again)));
        assert!(Arc::ptr_eq(&index.metas()["gpu-1"], &held));

        // Released: its facts stay until the watch brings new ones.
        node.metadata.labels = None;
        index.record_write(&node.metadata, None);
        assert_eq!(index.metas()["gpu-1"].labels.get(labels::FACTORY), None);
        assert_eq!(index.facts_of(["gpu-1"])["gpu-1"].resource_version, "7");
    }
}
