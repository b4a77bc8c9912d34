//! Writes: children by server-side apply (only when they differ), stale children deleted, Nodes
//! labelled and tainted. Every write is counted in the `api_writes` metric.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use fabbrica_crds::labels;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Context;
use super::build::{self, NodeApply, NodeChange, plan_node};
use super::placement::{Assignment, DesiredNode};
use super::status::Observed;
use super::validate::ValidatedFactory;
use crate::nodes::{NodeFacts, NodeMeta, NodeMetas};
use crate::{Error, FIELD_MANAGER, Result};

/// The Multus API group.
pub const MULTUS_GROUP: &str = "k8s.cni.cncf.io";

/// Whether every field of `desired` is in `existing` with the same value (the API server adds
/// defaults and metadata; lists must match element by element).
pub fn contains(existing: &Value, desired: &Value) -> bool {
    match (existing, desired) {
        (Value::Object(e), Value::Object(d)) => d
            .iter()
            .all(|(k, v)| e.get(k).is_some_and(|ev| contains(ev, v))),
        (Value::Array(e), Value::Array(d)) => {
            e.len() == d.len() && e.iter().zip(d).all(|(a, b)| contains(a, b))
        }
        _ => existing == desired,
    }
}

/// [`contains`], except that the top-level `exact` fields (maps fabbrica alone writes, such as a
/// ConfigMap's `data`) must be equal, so that a key dropped from the declaration is noticed.
pub fn matches(existing: &Value, desired: &Value, exact: &[&str]) -> bool {
    contains(existing, desired) && exact.iter().all(|f| existing.get(f) == desired.get(f))
}

/// The selector of a Factory's children.
pub fn child_selector(factory: &str) -> String {
    format!(
        "{}={factory},{}={}",
        labels::FACTORY,
        labels::MANAGED_BY,
        labels::MANAGER
    )
}

fn patch_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies the desired objects that differ from what exists and deletes the Factory's children of
/// this kind that are no longer desired. `recreate` says when a difference is in an immutable field.
async fn sync_kind<K>(
    ctx: &Context,
    api: &Api<K>,
    kind: &str,
    factory: &str,
    desired: Vec<K>,
    exact: &[&str],
    recreate: fn(&Value, &Value) -> bool,
) -> Result<()>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let existing: BTreeMap<String, K> = api
        .list(&ListParams::default().labels(&child_selector(factory)))
        .await?
        .items
        .into_iter()
        .map(|o| (o.name_any(), o))
        .collect();
    for object in &desired {
        let name = object.name_any();
        let want = serde_json::to_value(object)?;
        if let Some(current) = existing.get(&name) {
            let have = serde_json::to_value(current)?;
            if matches(&have, &want, exact) {
                continue;
            }
            if recreate(&have, &want) {
                tracing::info!(kind, %name, "an immutable field changed; recreating");
                api.delete(&name, &DeleteParams::default()).await?;
                ctx.metrics.write(kind, "delete");
            }
        }
        api.patch(&name, &patch_params(), &Patch::Apply(&want))
            .await?;
        ctx.metrics.write(kind, "apply");
    }
    let wanted: Vec<String> = desired.iter().map(ResourceExt::name_any).collect();
    for name in existing.keys().filter(|n| !wanted.contains(n)) {
        tracing::info!(kind, %name, "no longer declared; deleting");
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => ctx.metrics.write(kind, "delete"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

fn storage_class_immutable(have: &Value, want: &Value) -> bool {
    [
        "provisioner",
        "parameters",
        "reclaimPolicy",
        "volumeBindingMode",
    ]
    .iter()
    .any(|f| want.get(f).is_some_and(|w| have.get(f) != Some(w)))
}

fn never(_: &Value, _: &Value) -> bool {
    false
}

/// Applies StorageClasses, ConfigMaps and (where Multus is served) NetworkAttachmentDefinitions.
pub async fn apply_children(
    ctx: &Context,
    factory: &ValidatedFactory,
    assignment: &Assignment,
) -> Result<Observed> {
    let client = &ctx.client;
    let settings = &ctx.settings;
    let classes = factory
        .spec
        .storage_tiers
        .iter()
        .map(|t| build::build_storage_class(factory, t))
        .collect();
    sync_kind(
        ctx,
        &Api::<StorageClass>::all(client.clone()),
        "storageclass",
        &factory.name,
        classes,
        &["parameters"],
        storage_class_immutable,
    )
    .await?;
    let device_plugin =
        build::build_device_plugin_config_map(factory, &settings.gpu_operator_namespace);
    let topology = build::build_topology_config_map(factory, assignment, &settings.namespace);
    let topology_name = format!("{}/{}", settings.namespace, topology.name_any());
    let mut by_namespace: BTreeMap<String, Vec<ConfigMap>> = BTreeMap::new();
    by_namespace
        .entry(settings.gpu_operator_namespace.clone())
        .or_default()
        .push(device_plugin);
    by_namespace
        .entry(settings.namespace.clone())
        .or_default()
        .push(topology);
    for (namespace, maps) in by_namespace {
        let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
        sync_kind(
            ctx,
            &api,
            "configmap",
            &factory.name,
            maps,
            &["data"],
            never,
        )
        .await?;
    }
    let multus = match discovery::group(client, MULTUS_GROUP).await {
        Ok(group) => group
            .recommended_resources()
            .into_iter()
            .find(|(r, _)| r.kind == "NetworkAttachmentDefinition")
            .filter(|(_, caps)| caps.scope == Scope::Namespaced)
            .map(|(r, _)| r),
        Err(_) => None,
    };
    if let Some(resource) = &multus {
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), &settings.namespace, resource);
        let desired = build::build_network_attachments(factory, &settings.namespace)
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<DynamicObject>, _>>()?;
        sync_kind(
            ctx,
            &api,
            "networkattachmentdefinition",
            &factory.name,
            desired,
            &["spec"],
            never,
        )
        .await?;
    }
    Ok(Observed {
        multus: multus.is_some(),
        topology_config_map: topology_name,
    })
}

/// Sends one Node write and records what it left. Only the Node's metadata comes back: a real
/// Node's status (conditions, images) is most of its size, and the write does not touch it.
async fn write_node(
    ctx: &Context,
    api: &Api<Node>,
    write: PlannedWrite,
    desired: Option<&DesiredNode>,
) -> Result<()> {
    let PlannedWrite {
        name,
        change,
        facts,
    } = write;
    let body = change.body(&name, desired);
    match api
        .patch_metadata(&name, &patch_params(), &Patch::Apply(&body))
        .await
    {
        Ok(written) => {
            let version = written
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            let facts = facts.map(|facts| change.written(facts, version));
            ctx.nodes.record_write(&written.metadata, facts);
            ctx.metrics.write("node", "apply");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::NodeConflict(name)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// A Node write as planned.
struct PlannedWrite {
    /// The Node.
    name: String,
    /// What to write.
    change: NodeApply,
    /// The facts it was planned from, if known.
    facts: Option<NodeFacts>,
}

/// Pages of Nodes read at once when many Nodes outside the facts watch need their taints.
const LIST_PAGE: u32 = 500;

/// A page of Nodes outside the facts watch (fabbrica does not manage them yet), projected to what
/// planning needs; the full objects are dropped with the page.
type FactsPage = Vec<(String, NodeMeta, NodeFacts)>;

/// Reads the `wanted` Nodes with one paged list per pool selector instead of a GET per Node
/// (labelling a new pool costs a request per 500 Nodes, not one per Node) and sends each page's
/// wanted Nodes on `pages` as soon as it arrives, so writes start before the last page is read.
async fn read_facts(
    ctx: &Context,
    selectors: &[String],
    wanted: &BTreeSet<&String>,
    mut pages: futures::channel::mpsc::Sender<Result<FactsPage>>,
) {
    let api = Api::<Node>::all(ctx.client.clone());
    for selector in selectors {
        let mut params = ListParams::default().labels(selector).limit(LIST_PAGE);
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(err) => {
                    let _ = pages.send(Err(err.into())).await;
                    return;
                }
            };
            let seen: FactsPage = page
                .items
                .iter()
                .filter_map(|node| {
                    let name = node.name_any();
                    wanted.contains(&name).then(|| {
                        let meta = NodeMeta::from_meta(&node.metadata);
                        (name, meta, NodeFacts::from_node(node))
                    })
                })
                .collect();
            if pages.send(Ok(seen)).await.is_err() {
                return;
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
}

/// Labels and taints the Factory's Nodes and releases those it no longer claims. `selectors`
/// (the pools' node selectors) find the Nodes to read when some lack facts; their writes start
/// with the first page read.
pub async fn apply_nodes(
    ctx: &Context,
    assignment: &Assignment,
    metas: &NodeMetas,
    selectors: &[String],
) -> Result<()> {
    let targets: Vec<&String> = assignment
        .desired
        .keys()
        .chain(&assignment.release)
        .collect();
    let facts = ctx.nodes.facts_of(targets.iter().copied());
    let mut known = Vec::new();
    let mut unknown = BTreeSet::new();
    for name in targets {
        let Some(meta) = metas.get(name) else {
            continue;
        };
        match plan_node(assignment.desired.get(name), meta, facts.get(name)) {
            NodeChange::None => {}
            NodeChange::NeedsFacts => {
                unknown.insert(name);
            }
            NodeChange::Apply(change) => {
                known.push(PlannedWrite {
                    name: name.clone(),
                    change,
                    facts: facts.get(name).cloned(),
                });
            }
        }
    }
    if known.is_empty() && unknown.is_empty() {
        return Ok(());
    }
    tracing::info!(
        nodes = known.len() + unknown.len(),
        to_read = unknown.len(),
        "updating node labels and taints"
    );
    let started = std::time::Instant::now();
    let (sender, pages) = futures::channel::mpsc::channel(1);
    // The sender is dropped when reading ends, which ends the stream of writes.
    let reading = async move {
        if unknown.is_empty() {
            drop(sender);
        } else {
            read_facts(ctx, selectors, &unknown, sender).await;
        }
    };
    // A Node the lists missed appeared since; its watch event reconciles again.
    let read = pages
        .map(|page: Result<FactsPage>| {
            let page = page.map(|page| {
                page.into_iter().filter_map(|(name, meta, facts)| {
                    match plan_node(assignment.desired.get(&name), &meta, Some(&facts)) {
                        NodeChange::Apply(change) => Some(Ok(PlannedWrite {
                            name,
                            change,
                            facts: Some(facts),
                        })),
                        NodeChange::None | NodeChange::NeedsFacts => None,
                    }
                })
            });
            match page {
                Ok(writes) => futures::stream::iter(writes).left_stream(),
                Err(err) => futures::stream::once(async { Err(err) }).right_stream(),
            }
        })
        .flatten();
    let api = Api::<Node>::all(ctx.client.clone());
    let writing = futures::stream::iter(known.into_iter().map(Ok))
        .chain(read)
        .map(|write| {
            let api = api.clone();
            async move {
                let write = write?;
                let desired = assignment.desired.get(&write.name);
                write_node(ctx, &api, write, desired).await
            }
        })
        .buffer_unordered(ctx.settings.node_concurrency)
        // Every write is attempted; the first failure is reported and the reconcile retries.
        .fold((0usize, None), |(written, first), result| async move {
            match result {
                Ok(()) => (written + 1, first),
                Err(err) => (written, first.or(Some(err))),
            }
        });
    let ((), (written, failure)) = futures::join!(reading, writing);
    tracing::info!(
        nodes = written,
        seconds = started.elapsed().as_secs_f64(),
        "node labels and taints updated"
    );
    failure.map_or(Ok(()), Err)
}
