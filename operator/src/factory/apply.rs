//! Writes of the Factory controller: the built children through the reconcile kit (applied only
//! where they differ, stale ones deleted), Nodes labelled and tainted. Every write is counted in
//! the `api_writes` metric.

use std::collections::BTreeSet;

use fabbrica_crds::labels;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch};
use kube::discovery::{self, Scope};
use kube::{Api, Client, ResourceExt};

use super::Context;
use super::build::{Desired, NodeApply, NodeChange, plan_node};
use super::placement::{Assignment, DesiredNode};
use crate::nodes::{NodeFacts, NodeMeta, NodeMetas};
use crate::reconcile::apply::{Kind, dynamic, patch_params, sync_children};
use crate::reconcile::children::child_selector;
use crate::{Error, Result};

/// The Multus API group.
pub const MULTUS_GROUP: &str = "k8s.cni.cncf.io";

/// StorageClasses: `parameters` is fabbrica's alone; the provisioner, parameters, reclaim
/// policy and binding mode cannot change in place.
const STORAGE_CLASS: Kind = Kind::new("storageclass")
    .exact(&["parameters"])
    .immutable(&[
        "provisioner",
        "parameters",
        "reclaimPolicy",
        "volumeBindingMode",
    ]);
/// ConfigMaps: `data` is fabbrica's alone.
const CONFIG_MAP: Kind = Kind::new("configmap").exact(&["data"]);
/// Multus attachments: `spec` is fabbrica's alone.
const NETWORK_ATTACHMENT: Kind = Kind::new("networkattachmentdefinition").exact(&["spec"]);

/// The Multus NetworkAttachmentDefinition resource, when the API server serves it.
pub async fn discover_multus(client: &Client) -> Option<ApiResource> {
    match discovery::group(client, MULTUS_GROUP).await {
        Ok(group) => group
            .recommended_resources()
            .into_iter()
            .find(|(r, _)| r.kind == "NetworkAttachmentDefinition")
            .filter(|(_, caps)| caps.scope == Scope::Namespaced)
            .map(|(r, _)| r),
        Err(_) => None,
    }
}

/// Applies the built StorageClasses, ConfigMaps and (where Multus is served)
/// NetworkAttachmentDefinitions; children of the Factory no longer desired are deleted.
pub async fn apply_children(ctx: &Context, desired: &Desired) -> Result<()> {
    let client = &ctx.kit.client;
    let selector = child_selector(labels::FACTORY, &desired.factory);
    let api = Api::<StorageClass>::all(client.clone());
    sync_children(
        &ctx.kit,
        &api,
        STORAGE_CLASS,
        &selector,
        &desired.storage_classes,
    )
    .await?;
    for (namespace, maps) in &desired.config_maps {
        let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
        sync_children(&ctx.kit, &api, CONFIG_MAP, &selector, maps).await?;
    }
    if let Some((resource, attachments)) = &desired.network_attachments {
        let api = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &ctx.settings.namespace,
            resource,
        );
        let attachments = dynamic(attachments.clone())?;
        sync_children(&ctx.kit, &api, NETWORK_ATTACHMENT, &selector, &attachments).await?;
    }
    Ok(())
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
            ctx.kit.metrics.write("node", "apply");
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
    let api = Api::<Node>::all(ctx.kit.client.clone());
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
    let api = Api::<Node>::all(ctx.kit.client.clone());
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
