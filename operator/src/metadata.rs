//! Node metadata read the cheap way, for the selection watch that sees every Node of a cluster.
//!
//! Every kubelet status report reaches that watch as the Node's whole metadata: some fifty labels
//! and the managed fields of every writer (the kubelet's own entry lists each condition and
//! address it sets), tens of KiB of JSON that change nothing fabbrica reads. Parsed as an
//! `ObjectMeta`, each report allocated every label twice and every managed field as a JSON tree,
//! only to be compared and dropped.
//!
//! [`MetaNode`] is parsed into what the selection view needs instead: the labels as one string,
//! the one annotation fabbrica reads, and only fabbrica's own managed-fields entry; everything
//! else is skipped without being built. The labels are interned only when they differ from the
//! view already held ([`MetaNode::view_over`]): a status report changes no label, so it costs
//! two allocations, not a hundred lookups in the interner. [`node_metadata_client`] makes the API server
//! send Nodes as `PartialObjectMetadata`, so their spec and status never cross the wire.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::header::{ACCEPT, HeaderValue};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::FIELD_MANAGER;
use crate::interned::{Keys, sym};
use crate::nodes::{NodeMeta, Ownership, TAINTS_ANNOTATION};

/// What the API server is asked for on a single object or a watch.
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
/// What the API server is asked for on a list.
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

/// A client for reading Nodes whose every request asks for them as `PartialObjectMetadata` (a
/// list of them as `PartialObjectMetadataList`), as kube's own `list_metadata` and
/// `watch_metadata` do; its requests go through `client`. Only for reading Nodes: an object
/// fetched this way has no spec or status.
pub fn node_metadata_client(client: Client) -> Client {
    let default_namespace = client.default_namespace().to_owned();
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        let client = client.clone();
        async move {
            let watch = request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
            let list = request
                .uri()
                .path()
                .trim_end_matches('/')
                .ends_with("/nodes");
            let accept = if list && !watch {
                METADATA_LIST
            } else {
                METADATA
            };
            request
                .headers_mut()
                .insert(ACCEPT, HeaderValue::from_static(accept));
            client.send(request).await
        }
    });
    Client::new(service, default_namespace)
}

/// A Node as the selection watch reads it: its name and resourceVersion (for the watch itself)
/// and what its selection view is made of.
#[derive(Clone, Debug)]
pub struct MetaNode {
    metadata: ObjectMeta,
    labels: RawLabels,
    /// The selection view but its labels.
    rest: NodeMeta,
}

impl MetaNode {
    /// The Node's selection view: `old` itself when it says the same (nothing is interned
    /// then), else a new one.
    pub fn view_over(&self, old: Option<&Arc<NodeMeta>>) -> Arc<NodeMeta> {
        match old {
            Some(old) if self.same_as(old) => Arc::clone(old),
            _ => Arc::new(self.view()),
        }
    }

    /// The Node's selection view, its labels interned.
    pub fn view(&self) -> NodeMeta {
        NodeMeta {
            labels: self.labels.pairs().collect(),
            ..self.rest.clone()
        }
    }

    fn same_as(&self, view: &NodeMeta) -> bool {
        let rest = &self.rest;
        rest.taint_record == view.taint_record
            && rest.owned_labels == view.owned_labels
            && rest.owns_taint_record == view.owns_taint_record
            && rest.owns_taints == view.owns_taints
            && self.labels.len() == view.labels.len()
            && self.labels.sorted().eq(view.labels.iter())
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

    fn len(&self) -> usize {
        self.ends.len() / 2
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

    /// The labels sorted by key (the API server sends them sorted already).
    fn sorted(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self.pairs().collect();
        if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
            pairs.sort_by(|a, b| a.0.cmp(b.0));
        }
        pairs.into_iter()
    }
}

crate::nodes::node_projection!(MetaNode);

impl<'de> Deserialize<'de> for MetaNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Object {
            metadata: SlimMeta,
        }
        let Object { metadata } = Object::deserialize(deserializer)?;
        Ok(MetaNode {
            metadata: ObjectMeta {
                name: metadata.name,
                resource_version: metadata.resource_version,
                ..ObjectMeta::default()
            },
            labels: metadata.labels,
            rest: metadata.rest,
        })
    }
}

/// A string as the parser found it: borrowed from the text when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The metadata fields the selection watch keeps.
#[derive(Default)]
struct SlimMeta {
    name: Option<String>,
    resource_version: Option<String>,
    labels: RawLabels,
    rest: NodeMeta,
}

impl<'de> Deserialize<'de> for SlimMeta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SlimMetaVisitor)
    }
}

struct SlimMetaVisitor;

impl<'de> Visitor<'de> for SlimMetaVisitor {
    type Value = SlimMeta;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("object metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SlimMeta, A::Error> {
        let mut meta = SlimMeta::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "name" => meta.name = Some(map.next_value()?),
                "resourceVersion" => meta.resource_version = Some(map.next_value()?),
                "labels" => meta.labels = map.next_value::<LabelsSeen>()?.0,
                "annotations" => {
                    meta.rest.taint_record = map.next_value::<TaintRecordSeen>()?.0.map(|r| sym(&r))
                }
                "managedFields" => {
                    let ours = map.next_value::<OurManagedFields>()?.0;
                    let mut owned_labels = Vec::new();
                    for fields in &ours {
                        let ownership = Ownership::of(fields);
                        owned_labels.extend(ownership.labels);
                        meta.rest.owns_taint_record |= ownership.taint_record;
                        meta.rest.owns_taints |= ownership.taints;
                    }
                    meta.rest.owned_labels =
                        owned_labels.iter().map(String::as_str).collect::<Keys>();
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(meta)
    }
}

/// A label map.
struct LabelsSeen(RawLabels);

impl<'de> Deserialize<'de> for LabelsSeen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = LabelsSeen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of labels")
            }
            fn visit_unit<E: de::Error>(self) -> Result<LabelsSeen, E> {
                Ok(LabelsSeen(RawLabels::default()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelsSeen, A::Error> {
                let mut labels = RawLabels::default();
                while let Some((key, value)) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    labels.push(&key.0, &value.0);
                }
                Ok(LabelsSeen(labels))
            }
        }
        deserializer.deserialize_any(LabelsVisitor)
    }
}

/// The value of [`TAINTS_ANNOTATION`] among the annotations; the others are skipped.
struct TaintRecordSeen(Option<String>);

impl<'de> Deserialize<'de> for TaintRecordSeen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnnotationsVisitor;
        impl<'de> Visitor<'de> for AnnotationsVisitor {
            type Value = TaintRecordSeen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E: de::Error>(self) -> Result<TaintRecordSeen, E> {
                Ok(TaintRecordSeen(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TaintRecordSeen, A::Error> {
                let mut record = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0 == TAINTS_ANNOTATION {
                        record = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(TaintRecordSeen(record))
            }
        }
        deserializer.deserialize_any(AnnotationsVisitor)
    }
}

/// The `fieldsV1` of fabbrica's own server-side-apply entries; every other entry is skipped.
struct OurManagedFields(Vec<Value>);

impl<'de> Deserialize<'de> for OurManagedFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = OurManagedFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of managed fields entries")
            }
            fn visit_unit<E: de::Error>(self) -> Result<OurManagedFields, E> {
                Ok(OurManagedFields(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OurManagedFields, A::Error> {
                let mut ours = Vec::new();
                while let Some(entry) = seq.next_element::<EntrySeen>()? {
                    ours.extend(entry.0);
                }
                Ok(OurManagedFields(ours))
            }
        }
        deserializer.deserialize_any(EntriesVisitor)
    }
}

/// One managed-fields entry: its `fieldsV1` if it is fabbrica's server-side apply. The API server
/// writes `manager` and `operation` before `fieldsV1`, so another writer's fields are skipped
/// unread; in any other order they are read and dropped.
struct EntrySeen(Option<Value>);

impl<'de> Deserialize<'de> for EntrySeen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = EntrySeen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a managed fields entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EntrySeen, A::Error> {
                let mut manager: Option<Text<'de>> = None;
                let mut operation: Option<Text<'de>> = None;
                let mut fields: Option<Value> = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match &*key.0 {
                        "manager" => manager = Some(map.next_value()?),
                        "operation" => operation = Some(map.next_value()?),
                        "fieldsV1" => {
                            let known_not_ours =
                                manager.as_ref().is_some_and(|m| m.0 != FIELD_MANAGER)
                                    || operation.as_ref().is_some_and(|o| o.0 != "Apply");
                            if known_not_ours {
                                map.next_value::<IgnoredAny>()?;
                            } else {
                                fields = Some(map.next_value()?);
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let ours = manager.is_some_and(|m| m.0 == FIELD_MANAGER)
                    && operation.is_some_and(|o| o.0 == "Apply");
                Ok(EntrySeen(fields.filter(|_| ours)))
            }
        }
        deserializer.deserialize_map(EntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::PartialObjectMeta;
    use serde_json::json;

    use super::*;

    /// A Node's metadata as the API server sends it to a metadata watch: a site's labels, several
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
            let slim: MetaNode = serde_json::from_str(&text).unwrap();
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
        let parse = |value: Value| -> MetaNode { serde_json::from_value(value).unwrap() };
        let held = Arc::new(parse(node_metadata(false)).view());
        // A status report: a new resourceVersion and kubelet entry, the same labels.
        let mut report = node_metadata(false);
        report["metadata"]["resourceVersion"] = json!("4243");
        report["metadata"]["managedFields"][0]["time"] = json!("2026-12-03T10:05:00Z");
        assert!(Arc::ptr_eq(&parse(report).view_over(Some(&held)), &held));
        // The same labels in another order are the same labels.
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
        let reordered: MetaNode = serde_json::from_str(&text).unwrap();
        assert!(Arc::ptr_eq(&reordered.view_over(Some(&held)), &held));
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
    }

    #[test]
    fn a_node_without_labels_annotations_or_managed_fields_is_an_empty_view() {
        let text = json!({"metadata": {"name": "cpu-1", "resourceVersion": "1", "labels": null}})
            .to_string();
        let slim: MetaNode = serde_json::from_str(&text).unwrap();
        assert_eq!(slim.view(), NodeMeta::default());
        assert_eq!(slim.metadata.name.as_deref(), Some("cpu-1"));
    }
}
