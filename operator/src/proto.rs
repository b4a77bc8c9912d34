//! The Node watch's list and watch read in Kubernetes protobuf, handed to kube as JSON.
//!
//! The API server encodes each event once per encoding its watchers read, and shares that
//! encoding between them. Every other watcher of every Node (the scheduler, the controller
//! manager, kubelets) reads protobuf; a JSON watch of every Node makes the API server encode each
//! Node event (each kubelet report, each write) once more, in JSON, for that one client. At a
//! gigafactory's rate of Node writes that was a few percent of the API server's CPU, on machines
//! it already keeps busy (docs/BENCHMARKS.md). kube speaks JSON only, so [`NodeProtobuf`], a layer
//! of the Node watch's own client, asks for protobuf on the list and the watch of every Node and
//! turns each Node it reads into the JSON of what [`WatchedNode`](crate::watched::WatchedNode)
//! reads of it: the name and resourceVersion, the labels, fabbrica's taint record and its own
//! server-side-apply entries, the taints, the Ready condition and the allocatable GPUs. The rest
//! of the Node (its images, addresses, other writers' managed fields) is skipped unread. kube's
//! watcher keeps doing the rest: pages, bookmarks, relists and backoff.
//!
//! A response the API server sends in JSON (one that cannot serve protobuf) passes through as it
//! came; [`WatchedNode`](crate::watched::WatchedNode) reads both.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use fabbrica_crds::labels;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use prost::Message;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::value::RawValue;
use tower::{BoxError, Layer, Service};

use crate::FIELD_MANAGER;
use crate::nodes::TAINTS_ANNOTATION;

/// The Kubernetes protobuf media type.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// What the Node watch asks for: protobuf, or JSON where the server has no protobuf.
const ACCEPTED: &str = "application/vnd.kubernetes.protobuf, application/json";

/// The four bytes before every object the API server encodes in protobuf.
const MAGIC: &[u8] = b"k8s\0";

/// The path of the list and the watch of every Node.
const NODES: &str = "/api/v1/nodes";

/// A body the layer hands on.
type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why a protobuf response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("not a Kubernetes protobuf object: it does not start with k8s\\0")]
    Magic,
    #[error("reading protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("a {0} where a Node, NodeList or Status was expected")]
    Kind(String),
    #[error("a string that is not UTF-8 in field {0}")]
    Utf8(&'static str),
    #[error("a watch event without its object")]
    NoObject,
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the watch ended inside an event")]
    Truncated,
    #[error("reading the response: {0}")]
    Read(BoxError),
}

/// The messages of Kubernetes' `generated.proto` files the Node watch reads, with only the fields
/// it reads (prost skips the others by their length). Strings are read as bytes: they are slices of
/// the response, not copies, and are checked to be UTF-8 only when written out.
mod wire {
    use bytes::Bytes;

    /// `runtime.Unknown`: the envelope of every object.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Unknown {
        #[prost(message, optional, tag = "1")]
        pub type_meta: Option<TypeMeta>,
        #[prost(bytes = "bytes", tag = "2")]
        pub raw: Bytes,
    }

    /// `runtime.TypeMeta`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeMeta {
        #[prost(bytes = "bytes", tag = "1")]
        pub api_version: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub kind: Bytes,
    }

    /// `meta.v1.WatchEvent`; its object is an enveloped object.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WatchEvent {
        #[prost(bytes = "bytes", tag = "1")]
        pub r#type: Bytes,
        #[prost(message, optional, tag = "2")]
        pub object: Option<RawExtension>,
    }

    /// `runtime.RawExtension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RawExtension {
        #[prost(bytes = "bytes", tag = "1")]
        pub raw: Bytes,
    }

    /// `core.v1.NodeList`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeList {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ListMeta>,
        #[prost(message, repeated, tag = "2")]
        pub items: Vec<Node>,
    }

    /// `meta.v1.ListMeta`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListMeta {
        #[prost(bytes = "bytes", tag = "2")]
        pub resource_version: Bytes,
        #[prost(bytes = "bytes", tag = "3")]
        pub r#continue: Bytes,
        #[prost(int64, optional, tag = "4")]
        pub remaining_item_count: Option<i64>,
    }

    /// `core.v1.Node`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Node {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<ObjectMeta>,
        #[prost(message, optional, tag = "2")]
        pub spec: Option<NodeSpec>,
        #[prost(message, optional, tag = "3")]
        pub status: Option<NodeStatus>,
    }

    /// `meta.v1.ObjectMeta`. Its maps are read as their entries, which is what a map is on the
    /// wire: the API server writes them sorted by key.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ObjectMeta {
        #[prost(bytes = "bytes", tag = "1")]
        pub name: Bytes,
        #[prost(bytes = "bytes", tag = "6")]
        pub resource_version: Bytes,
        #[prost(message, repeated, tag = "11")]
        pub labels: Vec<Entry>,
        #[prost(message, repeated, tag = "12")]
        pub annotations: Vec<Entry>,
        #[prost(message, repeated, tag = "17")]
        pub managed_fields: Vec<ManagedFieldsEntry>,
    }

    /// One entry of a `map<string, string>`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(bytes = "bytes", tag = "1")]
        pub key: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub value: Bytes,
    }

    /// `meta.v1.ManagedFieldsEntry`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ManagedFieldsEntry {
        #[prost(bytes = "bytes", tag = "1")]
        pub manager: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub operation: Bytes,
        #[prost(message, optional, tag = "7")]
        pub fields_v1: Option<FieldsV1>,
    }

    /// `meta.v1.FieldsV1`: JSON, as the JSON encoding sends it.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldsV1 {
        #[prost(bytes = "bytes", tag = "1")]
        pub raw: Bytes,
    }

    /// `core.v1.NodeSpec`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeSpec {
        #[prost(message, repeated, tag = "5")]
        pub taints: Vec<Taint>,
    }

    /// `core.v1.Taint`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Taint {
        #[prost(bytes = "bytes", tag = "1")]
        pub key: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub value: Bytes,
        #[prost(bytes = "bytes", tag = "3")]
        pub effect: Bytes,
        #[prost(message, optional, tag = "4")]
        pub time_added: Option<Time>,
    }

    /// `meta.v1.Time`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Time {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `core.v1.NodeStatus`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeStatus {
        #[prost(message, repeated, tag = "2")]
        pub allocatable: Vec<QuantityEntry>,
        #[prost(message, repeated, tag = "4")]
        pub conditions: Vec<NodeCondition>,
    }

    /// One entry of a `map<string, Quantity>`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct QuantityEntry {
        #[prost(bytes = "bytes", tag = "1")]
        pub key: Bytes,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Quantity>,
    }

    /// `resource.Quantity`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quantity {
        #[prost(bytes = "bytes", tag = "1")]
        pub string: Bytes,
    }

    /// `core.v1.NodeCondition`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeCondition {
        #[prost(bytes = "bytes", tag = "1")]
        pub r#type: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub status: Bytes,
    }

    /// `meta.v1.Status`: an error, as a response or a watch event.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(bytes = "bytes", tag = "2")]
        pub status: Bytes,
        #[prost(bytes = "bytes", tag = "3")]
        pub message: Bytes,
        #[prost(bytes = "bytes", tag = "4")]
        pub reason: Bytes,
        #[prost(message, optional, tag = "5")]
        pub details: Option<StatusDetails>,
        #[prost(int32, tag = "6")]
        pub code: i32,
    }

    /// `meta.v1.StatusDetails`, without its causes.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusDetails {
        #[prost(bytes = "bytes", tag = "1")]
        pub name: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub group: Bytes,
        #[prost(bytes = "bytes", tag = "3")]
        pub kind: Bytes,
        #[prost(int32, tag = "5")]
        pub retry_after_seconds: i32,
    }
}

/// `bytes` as text; `field` names it in the error.
fn text<'a>(bytes: &'a Bytes, field: &'static str) -> Result<&'a str, TranscodeError> {
    std::str::from_utf8(bytes).map_err(|_| TranscodeError::Utf8(field))
}

/// `bytes` as text, absent when empty (as the JSON encoding leaves out empty optional strings).
fn optional<'a>(bytes: &'a Bytes, field: &'static str) -> Result<Option<&'a str>, TranscodeError> {
    Ok(Some(text(bytes, field)?).filter(|t| !t.is_empty()))
}

/// A map written from its entries, in their order.
struct Pairs<'a>(Vec<(&'a str, &'a str)>);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The JSON of a Node: what the Node watch reads of it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeJson<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: MetaJson<'a>,
    spec: SpecJson<'a>,
    status: StatusJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetaJson<'a> {
    name: &'a str,
    resource_version: &'a str,
    labels: Pairs<'a>,
    annotations: Pairs<'a>,
    managed_fields: Vec<ManagedJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManagedJson<'a> {
    manager: &'a str,
    operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields_v1: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct SpecJson<'a> {
    taints: Vec<TaintJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaintJson<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    effect: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_added: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    allocatable: Pairs<'a>,
    conditions: Vec<ConditionJson<'a>>,
}

#[derive(Serialize)]
struct ConditionJson<'a> {
    r#type: &'a str,
    status: &'a str,
}

/// The entries of a map whose keys `keep` keeps.
fn pairs<'a>(
    entries: &'a [wire::Entry],
    keep: impl Fn(&str) -> bool,
) -> Result<Pairs<'a>, TranscodeError> {
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries {
        let key = text(&entry.key, "metadata")?;
        if keep(key) {
            kept.push((key, text(&entry.value, "metadata")?));
        }
    }
    Ok(Pairs(kept))
}

/// Writes the JSON of what the Node watch reads of `node`.
fn write_node(node: &wire::Node, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let empty = wire::ObjectMeta::default();
    let meta = node.metadata.as_ref().unwrap_or(&empty);
    let mut managed_fields = Vec::new();
    for entry in &meta.managed_fields {
        // Only fabbrica's own server-side apply is read (`NodeMeta::own`).
        if entry.manager != FIELD_MANAGER.as_bytes() || entry.operation != "Apply".as_bytes() {
            continue;
        }
        let fields_v1 = match &entry.fields_v1 {
            Some(fields) => Some(serde_json::from_str::<&RawValue>(text(
                &fields.raw,
                "metadata.managedFields.fieldsV1",
            )?)?),
            None => None,
        };
        managed_fields.push(ManagedJson {
            manager: FIELD_MANAGER,
            operation: "Apply",
            fields_v1,
        });
    }
    let taints = node
        .spec
        .iter()
        .flat_map(|s| &s.taints)
        .map(|t| {
            Ok(TaintJson {
                key: text(&t.key, "spec.taints.key")?,
                value: optional(&t.value, "spec.taints.value")?,
                effect: text(&t.effect, "spec.taints.effect")?,
                time_added: t.time_added.as_ref().and_then(|time| {
                    k8s_openapi::jiff::Timestamp::new(time.seconds, time.nanos)
                        .ok()
                        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)
                }),
            })
        })
        .collect::<Result<Vec<_>, TranscodeError>>()?;
    let status = node.status.as_ref();
    let allocatable = status
        .iter()
        .flat_map(|s| &s.allocatable)
        .filter(|e| e.key == labels::GPU_RESOURCE.as_bytes())
        .map(|e| {
            let quantity = e.value.as_ref().map(|q| &q.string);
            Ok((
                labels::GPU_RESOURCE,
                quantity.map_or(Ok(""), |q| text(q, "status.allocatable"))?,
            ))
        })
        .collect::<Result<Vec<_>, TranscodeError>>()
        .map(Pairs)?;
    let conditions = status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.r#type == "Ready".as_bytes())
        .map(|c| {
            Ok(ConditionJson {
                r#type: "Ready",
                status: text(&c.status, "status.conditions.status")?,
            })
        })
        .collect::<Result<Vec<_>, TranscodeError>>()?;
    let json = NodeJson {
        api_version: "v1",
        kind: "Node",
        metadata: MetaJson {
            name: text(&meta.name, "metadata.name")?,
            resource_version: text(&meta.resource_version, "metadata.resourceVersion")?,
            labels: pairs(&meta.labels, |_| true)?,
            annotations: pairs(&meta.annotations, |key| key == TAINTS_ANNOTATION)?,
            managed_fields,
        },
        spec: SpecJson { taints },
        status: StatusJson {
            allocatable,
            conditions,
        },
    };
    serde_json::to_writer(out, &json)?;
    Ok(())
}

/// The JSON of a Status.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusObjectJson<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'a str,
    message: &'a str,
    reason: &'a str,
    code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<DetailsJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DetailsJson<'a> {
    name: &'a str,
    group: &'a str,
    kind: &'a str,
    retry_after_seconds: i32,
}

fn write_status(status: &wire::Status, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let details = match &status.details {
        Some(d) => Some(DetailsJson {
            name: text(&d.name, "details.name")?,
            group: text(&d.group, "details.group")?,
            kind: text(&d.kind, "details.kind")?,
            retry_after_seconds: d.retry_after_seconds,
        }),
        None => None,
    };
    let json = StatusObjectJson {
        api_version: "v1",
        kind: "Status",
        status: text(&status.status, "status")?,
        message: text(&status.message, "message")?,
        reason: text(&status.reason, "reason")?,
        code: status.code,
        details,
    };
    serde_json::to_writer(out, &json)?;
    Ok(())
}

/// The JSON of a NodeList's first part, up to its items.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMetaJson<'a> {
    resource_version: &'a str,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_item_count: Option<i64>,
}

fn write_list(list: &wire::NodeList, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let empty = wire::ListMeta::default();
    let meta = list.metadata.as_ref().unwrap_or(&empty);
    out.extend_from_slice(br#"{"apiVersion":"v1","kind":"NodeList","metadata":"#);
    serde_json::to_writer(
        &mut *out,
        &ListMetaJson {
            resource_version: text(&meta.resource_version, "metadata.resourceVersion")?,
            next: optional(&meta.r#continue, "metadata.continue")?,
            remaining_item_count: meta.remaining_item_count,
        },
    )?;
    out.extend_from_slice(br#","items":["#);
    for (i, node) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_node(node, out)?;
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// Opens an object's envelope: its kind and its encoding.
fn unwrap(mut object: Bytes) -> Result<(Bytes, Bytes), TranscodeError> {
    if !object.starts_with(MAGIC) {
        return Err(TranscodeError::Magic);
    }
    object.advance(MAGIC.len());
    let unknown = wire::Unknown::decode(object)?;
    let kind = unknown.type_meta.map(|t| t.kind).unwrap_or_default();
    Ok((kind, unknown.raw))
}

/// Writes the JSON of an enveloped Node, NodeList or Status.
fn write_object(object: Bytes, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let (kind, raw) = unwrap(object)?;
    match &kind[..] {
        b"Node" => write_node(&wire::Node::decode(raw)?, out),
        b"NodeList" => write_list(&wire::NodeList::decode(raw)?, out),
        b"Status" => write_status(&wire::Status::decode(raw)?, out),
        other => Err(TranscodeError::Kind(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

/// Writes one watch event as a line of JSON.
fn write_event(event: Bytes, out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let event = wire::WatchEvent::decode(event)?;
    let object = event.object.ok_or(TranscodeError::NoObject)?.raw;
    out.extend_from_slice(br#"{"type":"#);
    serde_json::to_writer(&mut *out, text(&event.r#type, "type")?)?;
    out.extend_from_slice(br#","object":"#);
    write_object(object, out)?;
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// Takes the next whole event off a watch's protobuf stream, if it has all come: each is its
/// length (four bytes, big-endian), then the event.
fn next_event(buffer: &mut BytesMut) -> Option<Bytes> {
    let length = u32::from_be_bytes(buffer.get(..4)?.try_into().ok()?) as usize;
    if buffer.len() < 4 + length {
        return None;
    }
    buffer.advance(4);
    Some(buffer.split_to(length).freeze())
}

/// A watch's protobuf stream as lines of JSON, one for each event, written as its events come.
fn watch_body<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let events = futures::stream::unfold(Some((body, BytesMut::new())), |state| async move {
        let (mut body, mut buffer) = state?;
        loop {
            let mut out = Vec::new();
            while let Some(event) = next_event(&mut buffer) {
                if let Err(err) = write_event(event, &mut out) {
                    return Some((Err(BoxError::from(err)), None));
                }
            }
            if !out.is_empty() {
                return Some((Ok(Frame::data(Bytes::from(out))), Some((body, buffer))));
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => return Some((Err(err.into()), None)),
                None if buffer.is_empty() => return None,
                None => return Some((Err(TranscodeError::Truncated.into()), None)),
            }
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(events))
}

/// Whether a response is in protobuf, and whether it is a watch's stream.
fn protobuf(response: &Response<impl http_body::Body>) -> Option<bool> {
    let kind = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    kind.starts_with(PROTOBUF)
        .then(|| kind.contains("stream=watch"))
}

/// A client of the same cluster as `client` (the same address, credentials and headers) whose
/// list and watch of every Node read protobuf: the Node watch's.
pub fn node_client(client: Client) -> Client {
    let namespace = client.default_namespace().to_owned();
    Client::new(NodeProtobuf.layer(Through(client)), namespace)
}

/// A client as a service: every request goes through its whole stack.
#[derive(Clone)]
struct Through(Client);

impl std::fmt::Debug for Through {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Through")
    }
}

impl Service<Request<Body>> for Through {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move { client.send(request).await.map_err(Into::into) })
    }
}

/// The layer that has the list and the watch of every Node read in protobuf (see the module's
/// documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeProtobuf;

impl<S> Layer<S> for NodeProtobuf {
    type Service = NodeProtobufService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NodeProtobufService { inner }
    }
}

/// The service of [`NodeProtobuf`].
#[derive(Clone, Debug)]
pub struct NodeProtobufService<S> {
    inner: S,
}

impl<S, B> Service<Request<Body>> for NodeProtobufService<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: From<TranscodeError> + Send,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        if request.method() == Method::GET && request.uri().path() == NODES {
            request
                .headers_mut()
                .insert(ACCEPT, HeaderValue::from_static(ACCEPTED));
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let Some(watch) = protobuf(&response) else {
                return Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()));
            };
            let (mut parts, body) = response.into_parts();
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts.headers.remove(CONTENT_LENGTH);
            let body = if watch {
                watch_body(body)
            } else {
                let whole = body
                    .collect()
                    .await
                    .map_err(|err| TranscodeError::Read(err.into()))?
                    .to_bytes();
                let mut out = Vec::new();
                write_object(whole, &mut out)?;
                Full::new(Bytes::from(out))
                    .map_err(|never| match never {})
                    .boxed_unsync()
            };
            Ok(Response::from_parts(parts, body))
        })
    }
}

#[cfg(test)]
mod tests {
    use kube::core::WatchEvent;

    use super::*;

    fn s(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// An object in the API server's protobuf envelope.
    fn enveloped(kind: &str, raw: Vec<u8>) -> Bytes {
        let unknown = wire::Unknown {
            type_meta: Some(wire::TypeMeta {
                api_version: s("v1"),
                kind: s(kind),
            }),
            raw: raw.into(),
        };
        [MAGIC, &unknown.encode_to_vec()].concat().into()
    }

    /// A watch event as the stream frames it: its length, then the event.
    fn framed(kind: &str, object: Bytes) -> Vec<u8> {
        let event = wire::WatchEvent {
            r#type: s(kind),
            object: Some(wire::RawExtension { raw: object }),
        }
        .encode_to_vec();
        [&(event.len() as u32).to_be_bytes()[..], &event].concat()
    }

    fn entry(key: &str, value: &str) -> wire::Entry {
        wire::Entry {
            key: s(key),
            value: s(value),
        }
    }

    fn node(version: &str) -> wire::Node {
        wire::Node {
            metadata: Some(wire::ObjectMeta {
                name: s("gpu-1"),
                resource_version: s(version),
                labels: vec![entry("a", "1"), entry(labels::FACTORY, "f")],
                annotations: vec![
                    entry("other", "x"),
                    entry(TAINTS_ANNOTATION, "k=v:NoSchedule"),
                ],
                managed_fields: vec![
                    wire::ManagedFieldsEntry {
                        manager: s("kubelet"),
                        operation: s("Update"),
                        fields_v1: Some(wire::FieldsV1 {
                            raw: s(r#"{"f:status":{}}"#),
                        }),
                    },
                    wire::ManagedFieldsEntry {
                        manager: s(FIELD_MANAGER),
                        operation: s("Apply"),
                        fields_v1: Some(wire::FieldsV1 {
                            raw: s(r#"{"f:metadata":{"f:labels":{"f:fabbrica.io/factory":{}}}}"#),
                        }),
                    },
                ],
            }),
            spec: Some(wire::NodeSpec {
                taints: vec![wire::Taint {
                    key: s("k"),
                    value: s("v"),
                    effect: s("NoExecute"),
                    time_added: Some(wire::Time {
                        seconds: 1_767_322_800,
                        nanos: 0,
                    }),
                }],
            }),
            status: Some(wire::NodeStatus {
                allocatable: vec![
                    wire::QuantityEntry {
                        key: s("cpu"),
                        value: Some(wire::Quantity { string: s("220") }),
                    },
                    wire::QuantityEntry {
                        key: s(labels::GPU_RESOURCE),
                        value: Some(wire::Quantity { string: s("8") }),
                    },
                ],
                conditions: vec![
                    wire::NodeCondition {
                        r#type: s("MemoryPressure"),
                        status: s("False"),
                    },
                    wire::NodeCondition {
                        r#type: s("Ready"),
                        status: s("True"),
                    },
                ],
            }),
        }
    }

    /// The JSON lines `stream` becomes when it comes in chunks of `chunk` bytes.
    async fn lines(stream: Vec<u8>, chunk: usize) -> Result<Vec<String>, BoxError> {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = stream
            .chunks(chunk)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures::stream::iter(chunks));
        let bytes = watch_body(body).collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec())?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    #[tokio::test]
    async fn a_protobuf_watch_reads_as_the_json_watch_of_what_the_node_watch_reads() {
        let bookmark = wire::Node {
            metadata: Some(wire::ObjectMeta {
                resource_version: s("12"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let expired = wire::Status {
            status: s("Failure"),
            message: s("too old resource version: 1 (12)"),
            reason: s("Expired"),
            code: 410,
            ..Default::default()
        };
        let stream = [
            framed("ADDED", enveloped("Node", node("11").encode_to_vec())),
            framed("BOOKMARK", enveloped("Node", bookmark.encode_to_vec())),
            framed("ERROR", enveloped("Status", expired.encode_to_vec())),
        ]
        .concat();
        // Events split anywhere across the body's chunks read the same.
        let lines = lines(stream, 7).await.expect("transcoded");
        assert_eq!(lines.len(), 3);
        let events: Vec<WatchEvent<crate::watched::WatchedNode>> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect();

        let WatchEvent::Added(mut added) = events[0].clone() else {
            panic!("{:?}", lines[0])
        };
        assert_eq!(added.name(), "gpu-1");
        let view = added.view();
        assert_eq!(view.labels.get(labels::FACTORY), Some("f"));
        assert_eq!(view.labels.get("a"), Some("1"));
        assert_eq!(
            view.taint_record.as_ref().map(|r| r.as_str()),
            Some("k=v:NoSchedule")
        );
        assert!(view.owned_labels.contains(labels::FACTORY));
        let facts = added.take_facts();
        assert_eq!(facts.resource_version, "11");
        assert!(facts.ready);
        assert_eq!(facts.gpus, 8);
        assert_eq!(facts.taints.len(), 1);
        assert_eq!(facts.taints[0].value.as_deref(), Some("v"));
        assert_eq!(
            facts.taints[0].time_added.as_ref().map(|t| t.0.as_second()),
            Some(1_767_322_800)
        );
        // Only what the Node watch reads is written: no other writer's managed fields, no other
        // annotation, no other resource.
        assert!(!lines[0].contains("kubelet") && !lines[0].contains("other"));
        assert!(!lines[0].contains("cpu") && !lines[0].contains("MemoryPressure"));

        assert!(
            matches!(&events[1], WatchEvent::Bookmark(b) if b.metadata.resource_version == "12")
        );
        let WatchEvent::Error(status) = &events[2] else {
            panic!("{:?}", lines[2])
        };
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    }

    #[tokio::test]
    async fn a_watch_cut_inside_an_event_is_an_error_not_a_quiet_end() {
        let mut stream = framed("ADDED", enveloped("Node", node("11").encode_to_vec()));
        stream.truncate(stream.len() - 3);
        let err = lines(stream, 64).await.expect_err("truncated");
        assert!(err.to_string().contains("inside an event"), "{err}");
    }

    #[test]
    fn a_list_reads_with_its_continue_token_and_each_node() {
        let list = wire::NodeList {
            metadata: Some(wire::ListMeta {
                resource_version: s("40"),
                r#continue: s("next-page"),
                remaining_item_count: Some(3),
            }),
            items: vec![node("38"), node("39")],
        };
        let mut out = Vec::new();
        write_object(enveloped("NodeList", list.encode_to_vec()), &mut out).expect("transcoded");
        let read: kube::core::ObjectList<crate::watched::WatchedNode> =
            serde_json::from_slice(&out).expect("a NodeList");
        assert_eq!(read.metadata.continue_.as_deref(), Some("next-page"));
        assert_eq!(read.metadata.resource_version.as_deref(), Some("40"));
        assert_eq!(read.items.len(), 2);
        assert_eq!(
            kube::Resource::meta(&read.items[1])
                .resource_version
                .as_deref(),
            Some("39")
        );
    }

    #[test]
    fn what_is_not_a_kubernetes_object_is_refused() {
        let mut out = Vec::new();
        let not_enveloped = Bytes::from(node("1").encode_to_vec());
        assert!(matches!(
            write_object(not_enveloped, &mut out),
            Err(TranscodeError::Magic)
        ));
        let pod = enveloped("Pod", Vec::new());
        assert!(matches!(write_object(pod, &mut out), Err(TranscodeError::Kind(k)) if k == "Pod"));
    }
}
