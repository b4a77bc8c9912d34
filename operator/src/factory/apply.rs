//! Writes of the Factory controller: the built children through the reconcile kit (applied only
//! where they differ, stale ones deleted), Nodes labelled and tainted. Every write is counted in
//! the `api_writes` metric. Each part is written even when another fails: the [`Outcome`] says
//! which failed, for the status and the retry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fabbrica_crds::labels;
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch};
use kube::discovery::{self, Scope};
use kube::{Api, Client, ResourceExt};

use super::Context;
use super::build::{Desired, NodeApply, NodeChange, build_namespace, plan_node};
use super::placement::{Assignment, DesiredNode};
use super::status::{FailedParts, PartFailure};
use crate::Settings;
use crate::nodes::{NodeFacts, NodeMeta, NodeMetas};
use crate::reconcile::apply::{Kind, apply_one, dynamic, patch_params, sync_children};
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
/// The operator's own namespace, created when missing.
const NAMESPACE: Kind = Kind::new("namespace");

/// What became of each part of a Factory's apply: the error of each part that failed; the
/// others were written.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The StorageClasses.
    pub storage_classes: Option<Error>,
    /// The ConfigMaps, by the namespace they go in.
    pub config_maps: BTreeMap<String, Error>,
    /// The Multus attachments.
    pub attachments: Option<Error>,
    /// The Nodes' labels and taints.
    pub nodes: Option<Error>,
}

impl Outcome {
    /// The failed parts as the status reports them: the device-plugin ConfigMap goes in the
    /// GPU Operator's namespace, the topology in the operator's own. A Node conflict is no
    /// failed part: it is retried at once with fresh data.
    pub fn failed_parts(&self, settings: &Settings) -> FailedParts {
        FailedParts {
            storage_classes: self.storage_classes.as_ref().map(ToString::to_string),
            device_plugin: self
                .config_maps
                .get(&settings.gpu_operator_namespace)
                .map(|err| match err {
                    Error::NamespaceMissing(namespace) => {
                        PartFailure::NamespaceMissing(namespace.clone())
                    }
                    other => PartFailure::Failed(other.to_string()),
                }),
            topology: self
                .config_maps
                .get(&settings.namespace)
                .map(ToString::to_string),
            attachments: self.attachments.as_ref().map(ToString::to_string),
            nodes: self
                .nodes
                .as_ref()
                .filter(|err| !matches!(err, Error::NodeConflict(_)))
                .map(ToString::to_string),
        }
    }

    /// The reconcile's error, if any part failed: `failed` (the failed parts as the status
    /// says them) with the first failure, Nodes first since a conflict is retried soonest; a
    /// Node conflict alone as it is.
    pub fn into_error(self, failed: String) -> Option<Error> {
        let first = self
            .nodes
            .into_iter()
            .chain(self.storage_classes)
            .chain(self.config_maps.into_values())
            .chain(self.attachments)
            .next()?;
        if failed.is_empty() {
            return Some(first);
        }
        Some(Error::Incomplete {
            message: format!("not every part was written: {failed}"),
            first: Box::new(first),
        })
    }
}

/// Creates the operator's own namespace when it is missing (run without the Helm chart); one
/// that exists is left as it is.
async fn ensure_namespace(ctx: &Context, name: &str) -> Result<()> {
    let api = Api::<Namespace>::all(ctx.kit.client.clone());
    let current = api
        .get_opt(name)
        .await
        .map_err(|err| Error::request("reading", format!("Namespace {name}"), err))?;
    if current.is_none() {
        tracing::info!(
            namespace = name,
            "the operator's namespace is missing; creating it"
        );
        apply_one(&ctx.kit, &api, NAMESPACE, &build_namespace(name), None).await?;
    }
    Ok(())
}

/// Fails with [`Error::NamespaceMissing`] when the namespace (another component's) is missing.
async fn require_namespace(ctx: &Context, name: &str) -> Result<()> {
    let api = Api::<Namespace>::all(ctx.kit.client.clone());
    match api.get_opt(name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::NamespaceMissing(name.to_owned())),
        Err(err) => Err(Error::request("reading", format!("Namespace {name}"), err)),
    }
}

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
/// NetworkAttachmentDefinitions; children of the Factory no longer desired are deleted. Each
/// part is tried whatever became of the others. The operator's own namespace is created when
/// missing; a missing namespace of another component's (the GPU Operator's) is reported, and
/// nothing is written there.
pub async fn apply_children(ctx: &Context, desired: &Desired) -> Outcome {
    let client = &ctx.kit.client;
    let selector = child_selector(labels::FACTORY, &desired.factory);
    let mut outcome = Outcome::default();
    let api = Api::<StorageClass>::all(client.clone());
    outcome.storage_classes = sync_children(
        &ctx.kit,
        &api,
        STORAGE_CLASS,
        &selector,
        &desired.storage_classes,
    )
    .await
    .err();
    for (namespace, maps) in &desired.config_maps {
        let present = if *namespace == ctx.settings.namespace {
            ensure_namespace(ctx, namespace).await
        } else {
            require_namespace(ctx, namespace).await
        };
        let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
        let written = match present {
            Ok(()) => sync_children(&ctx.kit, &api, CONFIG_MAP, &selector, maps)
                .await
                .map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = written {
            outcome.config_maps.insert(namespace.clone(), err);
        }
    }
    if let Some((resource, attachments)) = &desired.network_attachments {
        let api = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &ctx.settings.namespace,
            resource,
        );
        let written = match dynamic(attachments.clone()) {
            Ok(attachments) => {
                sync_children(&ctx.kit, &api, NETWORK_ATTACHMENT, &selector, &attachments)
                    .await
                    .map(drop)
            }
            Err(err) => Err(err),
        };
        outcome.attachments = written.err();
    }
    outcome
}

/// Attempts at one Node write. A taint write carries the resourceVersion its plan was read at,
/// and a kubelet's status report changes that version on every Node every few minutes; at a
/// gigafactory a pass of writes lasts minutes, so some Nodes change under it. Such a Node is read
/// again and planned anew at once, instead of in a later reconcile of every Node.
const NODE_ATTEMPTS: u32 = 3;

/// Sends one Node write (read again and planned anew on a conflict, [`NODE_ATTEMPTS`] times at
/// most) and records what it left; how many conflicts it met on the way.
async fn write_node(
    ctx: &Context,
    api: &Api<Node>,
    mut write: PlannedWrite,
    desired: Option<&DesiredNode>,
) -> Result<u32> {
    let mut conflicts = 0;
    loop {
        match send_node(ctx, api, &write, desired).await {
            Err(Error::NodeConflict(name)) if conflicts + 1 < NODE_ATTEMPTS => {
                conflicts += 1;
                match read_again(api, name, desired).await? {
                    Some(again) => write = again,
                    None => return Ok(conflicts),
                }
            }
            sent => return sent.map(|()| conflicts),
        }
    }
}

/// Reads a Node whose write met a conflict and plans it again: `None` when it needs nothing any
/// more (or is gone).
async fn read_again(
    api: &Api<Node>,
    name: String,
    desired: Option<&DesiredNode>,
) -> Result<Option<PlannedWrite>> {
    Ok(read_node(api, &name)
        .await?
        .and_then(|(meta, facts)| planned(name, desired, &meta, facts)))
}

/// Reads one Node, projected to what planning needs; `None` when it is gone.
async fn read_node(api: &Api<Node>, name: &str) -> Result<Option<(NodeMeta, NodeFacts)>> {
    let node = api
        .get_opt(name)
        .await
        .map_err(|err| Error::request("reading", format!("Node {name}"), err))?;
    Ok(node.map(|node| {
        (
            NodeMeta::from_meta(&node.metadata),
            NodeFacts::from_node(&node),
        )
    }))
}

/// The write a Node read just now needs, if any.
fn planned(
    name: String,
    desired: Option<&DesiredNode>,
    meta: &NodeMeta,
    facts: NodeFacts,
) -> Option<PlannedWrite> {
    match plan_node(desired, meta, Some(&facts)) {
        NodeChange::Apply(change) => Some(PlannedWrite {
            name,
            change,
            facts: Some(Arc::new(facts)),
        }),
        NodeChange::None | NodeChange::NeedsFacts => None,
    }
}

/// Sends one Node write and records what it left. Only the Node's metadata comes back: a real
/// Node's status (conditions, images) is most of its size, and the write does not touch it.
async fn send_node(
    ctx: &Context,
    api: &Api<Node>,
    write: &PlannedWrite,
    desired: Option<&DesiredNode>,
) -> Result<()> {
    let PlannedWrite {
        name,
        change,
        facts,
    } = write;
    let body = change.body(name, desired);
    match api
        .patch_metadata(name, &patch_params(), &Patch::Apply(&body))
        .await
    {
        Ok(written) => {
            let version = written
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            let facts = facts
                .clone()
                .map(|facts| change.written(Arc::unwrap_or_clone(facts), version));
            ctx.nodes.record_write(&written.metadata, facts);
            ctx.kit.metrics.write("node", "apply");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Err(Error::NodeConflict(name.clone()))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(Error::request("writing", format!("Node {name}"), err)),
    }
}

/// A Node write as planned.
struct PlannedWrite {
    /// The Node.
    name: String,
    /// What to write.
    change: NodeApply,
    /// The facts it was planned from, if known.
    facts: Option<Arc<NodeFacts>>,
}

/// Pages of Nodes read at once when many Nodes outside the facts watch need their taints. A page
/// is parsed whole (a Node with fifty labels and its managed fields is some 150 allocations), so
/// it is kept small: 500 made a page the largest thing on the operator's heap.
const LIST_PAGE: u32 = 100;

/// A page of Nodes outside the facts watch (fabbrica does not manage them yet), projected to what
/// planning needs; the full objects are dropped with the page.
type FactsPage = Vec<(String, NodeMeta, NodeFacts)>;

/// Reads the `wanted` Nodes with one paged list per pool selector instead of a GET per Node
/// (labelling a new pool costs a request per 100 Nodes, not one per Node) and sends each page's
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
                    let what = format!("Nodes matching {selector}");
                    let _ = pages.send(Err(Error::request("listing", what, err))).await;
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

/// Below one Node to read in this many Nodes of the cluster (or a single one), the Nodes are read
/// one by one: a Node that just gained a pool's label costs one GET, not a list of every Node of
/// its pool (a pool of 12,500 Nodes is 125 pages of full Nodes).
const GET_RATIO: usize = 20;

/// Reads the `wanted` Nodes one GET each, [`Settings::node_concurrency`] at once, and sends them
/// on `pages` as they arrive. A Node that is gone is left out: its watch event reconciles again.
async fn read_each(
    ctx: &Context,
    wanted: &BTreeSet<&String>,
    mut pages: futures::channel::mpsc::Sender<Result<FactsPage>>,
) {
    let api = Api::<Node>::all(ctx.kit.client.clone());
    let names: Vec<String> = wanted.iter().map(|name| (*name).clone()).collect();
    let mut reads = futures::stream::iter(names.into_iter().map(|name| {
        let api = api.clone();
        async move {
            let node = read_node(&api, &name).await?;
            Ok(node.map(|(meta, facts)| (name, meta, facts)))
        }
    }))
    .buffer_unordered(ctx.settings.node_concurrency);
    while let Some(read) = reads.next().await {
        let page = read.map(|node: Option<_>| node.into_iter().collect());
        if pages.send(page).await.is_err() {
            return;
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
        match plan_node(
            assignment.desired.get(name),
            meta,
            facts.get(name).map(AsRef::as_ref),
        ) {
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
        } else if unknown.len() == 1 || unknown.len() * GET_RATIO <= metas.len() {
            read_each(ctx, &unknown, sender).await;
        } else {
            read_facts(ctx, selectors, &unknown, sender).await;
        }
    };
    // A Node the lists missed appeared since; its watch event reconciles again.
    let read = pages
        .map(|page: Result<FactsPage>| {
            let page = page.map(|page| {
                page.into_iter().filter_map(|(name, meta, facts)| {
                    let desired = assignment.desired.get(&name);
                    planned(name, desired, &meta, facts).map(Ok)
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
        .fold(
            (0usize, 0u32, None),
            |(written, conflicts, first), result| async move {
                match result {
                    Ok(met) => (written + 1, conflicts + met, first),
                    Err(err) => (written, conflicts, first.or(Some(err))),
                }
            },
        );
    let ((), (written, conflicts, failure)) = futures::join!(reading, writing);
    tracing::info!(
        nodes = written,
        conflicts,
        seconds = started.elapsed().as_secs_f64(),
        "node labels and taints updated"
    );
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reconcile::run::Failure;

    fn forbidden(what: &str) -> Error {
        Error::request(
            "writing",
            what,
            kube::Error::Api(Box::new(kube::core::Status {
                code: 403,
                message: "forbidden".to_owned(),
                ..kube::core::Status::default()
            })),
        )
    }

    #[test]
    fn each_failed_part_is_reported_where_it_belongs() {
        let settings = Settings::default();
        let outcome = Outcome {
            config_maps: BTreeMap::from([(
                "gpu-operator".to_owned(),
                Error::NamespaceMissing("gpu-operator".to_owned()),
            )]),
            nodes: Some(Error::NodeConflict("n1".to_owned())),
            ..Outcome::default()
        };
        let failed = outcome.failed_parts(&settings);
        assert_eq!(
            failed,
            FailedParts {
                device_plugin: Some(PartFailure::NamespaceMissing("gpu-operator".to_owned())),
                ..FailedParts::default()
            },
            "a Node conflict is retried, not reported"
        );
        let err = outcome
            .into_error("DevicePluginConfig: namespace gpu-operator does not exist".to_owned())
            .unwrap();
        assert!(err.in_status());
        assert_eq!(
            err.retry(),
            Duration::from_secs(1),
            "the conflict goes first"
        );
        assert_eq!(
            err.to_string(),
            "not every part was written: DevicePluginConfig: namespace gpu-operator does not exist"
        );
    }

    #[test]
    fn a_failure_in_the_operators_own_namespace_is_the_topologys() {
        let settings = Settings::default();
        let outcome = Outcome {
            config_maps: BTreeMap::from([(
                "fabbrica-system".to_owned(),
                forbidden("ConfigMap fabbrica-system/x-topology"),
            )]),
            ..Outcome::default()
        };
        let failed = outcome.failed_parts(&settings);
        assert_eq!(
            failed.topology.as_deref(),
            Some("writing ConfigMap fabbrica-system/x-topology failed: forbidden")
        );
        assert_eq!(failed.device_plugin, None);
        assert!(Outcome::default().into_error(String::new()).is_none());
    }
}
