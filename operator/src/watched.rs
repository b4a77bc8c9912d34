//! Nodes read the cheap way, for the one watch that sees every Node of a cluster.
//!
//! Every kubelet status report reaches that watch as the whole Node: some fifty labels, the managed
//! fields of every writer (the kubelet's own entry lists each condition and address it sets), the
//! status with its conditions, capacity, addresses and image list: tens of KiB of JSON that change
//! nothing fabbrica reads. Parsed as a `Node`, each report allocated every label twice, every
//! managed field as a JSON tree and every condition and image, only to be compared and dropped.
//!
//! [`WatchedNode`] is parsed into what the operator's two views of a Node need instead, in one
//! pass: for selection the labels, the one annotation fabbrica reads and only fabbrica's own
//! managed-fields entries, each kept as the text the API server sent; for its facts whether it is
//! Ready, its allocatable GPUs, its taints and resourceVersion. Everything else is skipped without
//! being built. The selection view's text is digested, and read (its labels interned, fabbrica's
//! entries walked) only when the digest differs from the view already held
//! ([`WatchedNode::view_over`]): a status report changes none of it, so it costs a copy of some
//! text and a hash, not a hundred allocations and lookups in the interner.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use fabbrica_crds::labels;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::FIELD_MANAGER;
use crate::interned::sym;
use crate::nodes::{NodeFacts, NodeMeta, TAINTS_ANNOTATION};

/// A Node as the operator's Node watch reads it: its name and resourceVersion (for the watch
/// itself), what its selection view is read from, and its facts.
#[derive(Clone, Debug)]
pub struct WatchedNode {
    metadata: ObjectMeta,
    /// What the selection view is read from.
    source: ViewSource,
    /// What status and taint writes need of it.
    facts: NodeFacts,
}

/// What a Node's selection view is read from, as the API server sent it, and its digest.
#[derive(Clone, Debug, Default)]
struct ViewSource {
    /// The labels, a JSON map.
    labels: Option<Box<RawValue>>,
    /// The value of [`TAINTS_ANNOTATION`].
    taint_record: Option<String>,
    /// The `fieldsV1` of each of fabbrica's server-side-apply entries.
    ours: Vec<Box<RawValue>>,
    /// A digest of all of the above: [`NodeMeta::digest`] of the view read from it.
    digest: u64,
}

impl ViewSource {
    /// Digests what was read: never 0, which marks a view not read from a report.
    fn digested(mut self) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        self.labels.as_deref().map(RawValue::get).hash(&mut hasher);
        self.taint_record.hash(&mut hasher);
        for fields in &self.ours {
            fields.get().hash(&mut hasher);
        }
        self.digest = hasher.finish().max(1);
        self
    }
}

impl WatchedNode {
    /// The Node's selection view: `old` itself when it was read from the same text (nothing is
    /// parsed or interned then), else a new one, sharing `old`'s labels and taint record where
    /// they say the same. (The echo of fabbrica's own write is read to the view recorded from the
    /// write's response: its labels are not interned again.)
    pub fn view_over(&self, old: Option<&Arc<NodeMeta>>) -> Arc<NodeMeta> {
        match old {
            Some(old) if old.digest == self.source.digest => Arc::clone(old),
            _ => Arc::new(self.read_view(old.map(AsRef::as_ref))),
        }
    }

    /// The Node's selection view, its labels interned. The text was checked to be JSON when the
    /// report was parsed; labels that are not a map of strings (which the API server never
    /// sends) read as none.
    pub fn view(&self) -> NodeMeta {
        self.read_view(None)
    }

    /// The Node's selection view, with `old`'s labels and taint record where they are the same.
    fn read_view(&self, old: Option<&NodeMeta>) -> NodeMeta {
        let source = &self.source;
        let seen = source
            .labels
            .as_deref()
            .and_then(|raw| serde_json::from_str::<LabelsSeen>(raw.get()).ok())
            .unwrap_or_default()
            .0;
        // The API server sends labels sorted by key, as `Labels` iterates them.
        let labels = match old {
            Some(old) if old.labels.iter().eq(seen.pairs()) => old.labels.clone(),
            _ => seen.pairs().collect(),
        };
        let taint_record = match old {
            Some(old)
                if old.taint_record.as_ref().map(|r| r.as_str())
                    == source.taint_record.as_deref() =>
            {
                old.taint_record.clone()
            }
            _ => source.taint_record.as_deref().map(sym),
        };
        let ours: Vec<Value> = source
            .ours
            .iter()
            .filter_map(|raw| serde_json::from_str(raw.get()).ok())
            .collect();
        let mut view = NodeMeta {
            labels,
            taint_record,
            digest: source.digest,
            ..NodeMeta::default()
        };
        view.own(&ours);
        view
    }

    /// The Node's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The Node's facts, taken out (the next call gets empty ones).
    pub fn take_facts(&mut self) -> NodeFacts {
        std::mem::take(&mut self.facts)
    }
}

/// Labels as read: every key and value in one string, with where each ends.
#[derive(Clone, Debug, Default)]
struct RawLabels {
    text: String,
    /// The end of each key and of each value in `text`, in turn.
    ends: Vec<usize>,
}

impl RawLabels {
    fn push(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        self.ends.push(self.text.len());
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }

    /// The labels in the order read.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.ends.chunks_exact(2).scan(0, |start, ends| {
            let key = &self.text[*start..ends[0]];
            let value = &self.text[ends[0]..ends[1]];
            *start = ends[1];
            Some((key, value))
        })
    }
}

impl Resource for WatchedNode {
    type DynamicType = ();
    type Scope = k8s_openapi::ClusterResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Node::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Node::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Node::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Node::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de> Deserialize<'de> for WatchedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Object {
            metadata: SlimMeta,
            #[serde(default)]
            spec: Option<SpecSeen>,
            #[serde(default)]
            status: Option<StatusSeen>,
        }
        let Object {
            metadata,
            spec,
            status,
        } = Object::deserialize(deserializer)?;
        let facts = NodeFacts {
            resource_version: metadata.resource_version.clone().unwrap_or_default(),
            ready: status.as_ref().is_some_and(|s| s.conditions.0),
            gpus: status.as_ref().map_or(0, |s| s.allocatable.0),
            taints: spec.and_then(|s| s.taints).unwrap_or_default().into(),
        };
        Ok(WatchedNode {
            metadata: ObjectMeta {
                name: metadata.name,
                resource_version: metadata.resource_version,
                ..ObjectMeta::default()
            },
            source: metadata.source.digested(),
            facts,
        })
    }
}

/// What the facts need of a Node's spec.
#[derive(Deserialize)]
struct SpecSeen {
    #[serde(default)]
    taints: Option<Vec<Taint>>,
}

/// What the facts need of a Node's status: whether it is Ready and its allocatable GPUs; its
/// other conditions, its capacity, addresses, images and system info are skipped unbuilt.
#[derive(Deserialize)]
struct StatusSeen {
    #[serde(default)]
    conditions: ReadySeen,
    #[serde(default)]
    allocatable: GpusSeen,
}

/// A string as the parser found it: borrowed from the text when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// A JSON map or list read one entry at a time into what is kept of it, `null` read as empty:
/// the shape of every part of a Node this parser keeps something of. Each part takes the entries
/// it wants and skips the rest unbuilt.
trait Fold<'de>: Default {
    /// What the value is, for error messages.
    const EXPECTING: &'static str;

    /// Takes one entry of a map: its key, read; its value, to be read or skipped from `map`.
    fn entry<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<(), A::Error> {
        let _ = (key, map);
        Err(de::Error::invalid_type(
            de::Unexpected::Map,
            &Self::EXPECTING,
        ))
    }

    /// Takes the next element of a list from `seq`; `false` at its end.
    fn element<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let _ = seq;
        Err(de::Error::invalid_type(
            de::Unexpected::Seq,
            &Self::EXPECTING,
        ))
    }
}

struct FoldVisitor<T>(PhantomData<T>);

impl<'de, T: Fold<'de>> Visitor<'de> for FoldVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut kept = T::default();
        while let Some(key) = map.next_key()? {
            kept.entry(key, &mut map)?;
        }
        Ok(kept)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let mut kept = T::default();
        while kept.element(&mut seq)? {}
        Ok(kept)
    }
}

/// Deserializes each of these types as a [`Fold`].
macro_rules! folded {
    ($($kept:ident),*) => {$(
        impl<'de> Deserialize<'de> for $kept {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(FoldVisitor(PhantomData))
            }
        }
    )*};
}

folded!(
    SlimMeta,
    LabelsSeen,
    TaintRecordSeen,
    OurManagedFields,
    EntrySeen,
    ReadySeen,
    GpusSeen
);

/// The metadata fields the Node watch keeps.
#[derive(Default)]
struct SlimMeta {
    name: Option<String>,
    resource_version: Option<String>,
    source: ViewSource,
}

impl<'de> Fold<'de> for SlimMeta {
    const EXPECTING: &'static str = "object metadata";

    fn entry<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<(), A::Error> {
        match &*key.0 {
            "name" => self.name = Some(map.next_value()?),
            "resourceVersion" => self.resource_version = Some(map.next_value()?),
            "labels" => self.source.labels = Some(map.next_value()?),
            "annotations" => self.source.taint_record = map.next_value::<TaintRecordSeen>()?.0,
            "managedFields" => self.source.ours = map.next_value::<OurManagedFields>()?.0,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A label map.
#[derive(Default)]
struct LabelsSeen(RawLabels);

impl<'de> Fold<'de> for LabelsSeen {
    const EXPECTING: &'static str = "a map of labels";

    fn entry<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<(), A::Error> {
        let value: Text<'de> = map.next_value()?;
        self.0.push(&key.0, &value.0);
        Ok(())
    }
}

/// The value of [`TAINTS_ANNOTATION`] among the annotations; the others are skipped.
#[derive(Default)]
struct TaintRecordSeen(Option<String>);

impl<'de> Fold<'de> for TaintRecordSeen {
    const EXPECTING: &'static str = "a map of annotations";

    fn entry<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<(), A::Error> {
        if key.0 == TAINTS_ANNOTATION {
            self.0 = Some(map.next_value()?);
        } else {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// The `fieldsV1` of fabbrica's own server-side-apply entries, as sent; every other entry is
/// skipped.
#[derive(Default)]
struct OurManagedFields(Vec<Box<RawValue>>);

impl<'de> Fold<'de> for OurManagedFields {
    const EXPECTING: &'static str = "a list of managed fields entries";

    fn element<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let Some(entry) = seq.next_element::<EntrySeen>()? else {
            return Ok(false);
        };
        self.0.extend(entry.ours());
        Ok(true)
    }
}

/// One managed-fields entry: whether its writer is fabbrica's field manager and its operation
/// an apply, and its `fieldsV1` unless it is known by then not to be fabbrica's server-side
/// apply. The API server writes `manager` and `operation` before `fieldsV1`, so another writer's
/// fields are skipped unread; in any other order they are read, then dropped.
#[derive(Default)]
struct EntrySeen {
    ours_manager: Option<bool>,
    apply: Option<bool>,
    fields: Option<Box<RawValue>>,
}

impl EntrySeen {
    /// The entry's fields, if it is fabbrica's server-side apply.
    fn ours(self) -> Option<Box<RawValue>> {
        self.fields
            .filter(|_| self.ours_manager == Some(true) && self.apply == Some(true))
    }
}

impl<'de> Fold<'de> for EntrySeen {
    const EXPECTING: &'static str = "a managed fields entry";

    fn entry<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<(), A::Error> {
        match &*key.0 {
            "manager" => {
                self.ours_manager = Some(map.next_value::<Text<'de>>()?.0 == FIELD_MANAGER)
            }
            "operation" => self.apply = Some(map.next_value::<Text<'de>>()?.0 == "Apply"),
            "fieldsV1" if self.ours_manager == Some(false) || self.apply == Some(false) => {
                map.next_value::<IgnoredAny>()?;
            }
            "fieldsV1" => self.fields = Some(map.next_value()?),
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Whether the conditions hold `Ready` with status `True`.
#[derive(Default)]
struct ReadySeen(bool);

impl<'de> Fold<'de> for ReadySeen {
    const EXPECTING: &'static str = "a list of conditions";

    fn element<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        #[derive(Deserialize)]
        struct Condition<'a> {
            #[serde(rename = "type", borrow)]
            type_: Text<'a>,
            #[serde(borrow)]
            status: Text<'a>,
        }
        let Some(c) = seq.next_element::<Condition<'de>>()? else {
            return Ok(false);
        };
        self.0 |= c.type_.0 == "Ready" && c.status.0 == "True";
        Ok(true)
    }
}

/// The allocatable `nvidia.com/gpu` among the allocatable resources (0 when absent or not a
/// whole number).
#[derive(Default)]
struct GpusSeen(u64);

impl<'de> Fold<'de> for GpusSeen {
    const EXPECTING: &'static str = "a map of resources";

    fn entry<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<(), A::Error> {
        if key.0 == labels::GPU_RESOURCE {
            self.0 = map.next_value::<Text<'de>>()?.0.parse().unwrap_or(0);
        } else {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::PartialObjectMeta;
    use serde_json::json;

    use super::*;

    /// A Node as the API server sends it to the Node watch, its spec and status aside: a site's labels, several
    /// writers' managed fields (fabbrica's in the middle), other annotations.
    fn node_metadata(fabbrica_first: bool) -> Value {
        let mut ours = json!({
            "manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "v1",
            "time": "2026-12-03T10:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {
                "f:labels": {"f:fabbrica.io/factory": {}, "f:fabbrica.io/pool": {}},
                "f:annotations": {"f:fabbrica.io/taints": {}}},
                "f:spec": {"f:taints": {}}}});
        if fabbrica_first {
            // fieldsV1 before manager: read, then kept because the entry turns out to be ours.
            let fields = ours["fieldsV1"].take();
            ours = json!({"fieldsV1": fields, "manager": FIELD_MANAGER, "operation": "Apply"});
        }
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {
        "name": "gpu-1", "uid": "0b6c", "resourceVersion": "4242",
        "creationTimestamp": "2026-12-03T09:00:00Z",
        "labels": {"fabbrica.io/factory": "eu", "fabbrica.io/pool": "train",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "kubernetes.io/hostname": "gpu-1",
            "escaped": "a\"b"},
        "annotations": {"node.alpha.kubernetes.io/ttl": "0",
            "fabbrica.io/taints": "nvidia.com/gpu=present:NoSchedule"},
        "managedFields": [
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:kubernetes.io/hostname": {}}}}},
            ours,
            {"manager": FIELD_MANAGER, "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:stale": {}}}}},
            {"manager": "kwok", "operation": "Update", "subresource": "status", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}
        ]}})
    }

    #[test]
    fn the_selection_view_is_what_the_full_metadata_gives() {
        for fabbrica_first in [false, true] {
            let text = node_metadata(fabbrica_first).to_string();
            let full: PartialObjectMeta<Node> = serde_json::from_str(&text).unwrap();
            let slim: WatchedNode = serde_json::from_str(&text).unwrap();
            let view = slim.view();
            assert_eq!(view, NodeMeta::from_meta(&full.metadata));
            assert_eq!(slim.metadata.name.as_deref(), Some("gpu-1"));
            assert_eq!(slim.metadata.resource_version.as_deref(), Some("4242"));
            assert_eq!(view.labels.get("escaped"), Some("a\"b"));
            assert_eq!(
                view.owned_labels.iter().collect::<Vec<_>>(),
                ["fabbrica.io/factory", "fabbrica.io/pool"],
                "only fabbrica's apply entry counts, not its updates or other writers"
            );
            assert!(view.owns_taints && view.owns_taint_record);
            assert_eq!(
                view.taint_record.as_deref().map(String::as_str),
                Some("nvidia.com/gpu=present:NoSchedule")
            );
        }
    }

    #[test]
    fn a_report_that_changes_nothing_selection_reads_keeps_the_view_held() {
        let parse = |value: Value| -> WatchedNode { serde_json::from_value(value).unwrap() };
        let held = Arc::new(parse(node_metadata(false)).view());
        // A status report: a new resourceVersion and kubelet entry, the same labels.
        let mut report = node_metadata(false);
        report["metadata"]["resourceVersion"] = json!("4243");
        report["metadata"]["managedFields"][0]["time"] = json!("2026-12-03T10:05:00Z");
        assert!(Arc::ptr_eq(&parse(report).view_over(Some(&held)), &held));
        // The same labels in another order are the same labels: read again (the API server
        // sends them sorted), to a view equal to the one held.
        let text = node_metadata(false).to_string();
        let labels = node_metadata(false)["metadata"]["labels"].to_string();
        let reversed: Vec<String> = node_metadata(false)["metadata"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .rev()
            .map(|(k, v)| format!("{}:{v}", json!(k)))
            .collect();
        let text = text.replace(&labels, &format!("{{{}}}", reversed.join(",")));
        assert!(!text.contains(&labels));
        let reordered: WatchedNode = serde_json::from_str(&text).unwrap();
        assert_eq!(*reordered.view_over(Some(&held)), *held);
        // A changed label, a label more, a lost annotation: a new view.
        for change in [
            json!({"labels": {"fabbrica.io/pool": "serve"}}),
            json!({"labels": {"topology.example.com/scalable-unit": "su01"}}),
            json!({"annotations": {"fabbrica.io/taints": null}}),
        ] {
            let mut changed = node_metadata(false);
            for (field, entries) in change.as_object().unwrap() {
                for (key, value) in entries.as_object().unwrap() {
                    match value {
                        Value::Null => {
                            changed["metadata"][field]
                                .as_object_mut()
                                .unwrap()
                                .remove(key);
                        }
                        _ => changed["metadata"][field][key] = value.clone(),
                    }
                }
            }
            let changed = parse(changed);
            let view = changed.view_over(Some(&held));
            assert!(!Arc::ptr_eq(&view, &held), "{change}");
            assert_eq!(*view, changed.view(), "{change}");
            assert_ne!(*view, *held, "{change}");
        }
        assert_eq!(*parse(node_metadata(false)).view_over(None), *held);

        // The echo of a write, whose view was recorded from the write's response (digest 0): the
        // same view, now with the report's digest, so the next report is not read again.
        let text = node_metadata(false).to_string();
        let full: PartialObjectMeta<Node> = serde_json::from_str(&text).unwrap();
        let recorded = Arc::new(NodeMeta::from_meta(&full.metadata));
        let echo = parse(node_metadata(false)).view_over(Some(&recorded));
        assert_eq!(*echo, *recorded);
        assert_ne!(echo.digest, 0);
        let mut report = node_metadata(false);
        report["metadata"]["resourceVersion"] = json!("4244");
        assert!(Arc::ptr_eq(&parse(report).view_over(Some(&echo)), &echo));
    }

    #[test]
    fn a_node_without_labels_annotations_or_managed_fields_is_an_empty_view() {
        let text = json!({"metadata": {"name": "cpu-1", "resourceVersion": "1", "labels": null}})
            .to_string();
        let slim: WatchedNode = serde_json::from_str(&text).unwrap();
        assert_eq!(slim.view(), NodeMeta::default());
        assert_eq!(slim.metadata.name.as_deref(), Some("cpu-1"));
    }
}
