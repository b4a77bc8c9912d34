//! Writes of the Factory controller: the built children through the reconcile kit (applied only
//! where they differ, stale ones deleted), Nodes labelled and tainted. Every write is counted in
//! the `api_writes` metric. Each part is written even when another fails: the [`Outcome`] says
//! which failed, for the status and the retry.

use std::collections::BTreeMap;
use std::sync::Arc;

use fabbrica_crds::labels;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, Patch};
use kube::discovery::{self, Scope};
use kube::{Api, Client};

use super::Context;
use super::build::{Desired, NodeApply, NodeChange, build_namespace, plan_node};
use super::placement::{Assignment, DesiredNode};
use super::status::{FailedParts, PartFailure};
use crate::Settings;
use crate::nodes::{NodeFacts, NodeMeta, NodeMetas, NodeName};
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

/// Attempts at one Node write. A taint write carries the resourceVersion the watch saw last, and
/// a kubelet's status report changes it on every Node every few minutes; a Node that changed
/// under its write is read again and planned anew at once, instead of in a later reconcile of
/// every Node.
const NODE_ATTEMPTS: u32 = 3;

/// Plans the Node `name` from what is known of it now (read with a GET when the watch has not
/// brought its facts yet), sends the write it needs, if any (read again and planned anew on a
/// conflict, [`NODE_ATTEMPTS`] times at most) and records what it left; how many conflicts it
/// met on the way.
async fn write_node(
    ctx: &Context,
    api: &Api<Node>,
    name: &str,
    desired: Option<&DesiredNode>,
) -> Result<u32> {
    let Some((meta, facts)) = ctx.nodes.node(name) else {
        return Ok(0);
    };
    let mut write = match planned(name, desired, &meta, facts) {
        Planned::Nothing => return Ok(0),
        Planned::Write(write) => write,
        Planned::NeedsRead => match read_again(api, name, desired).await? {
            Some(write) => write,
            None => return Ok(0),
        },
    };
    let mut conflicts = 0;
    loop {
        match send_node(ctx, api, &write, desired).await {
            Err(Error::NodeConflict(name)) if conflicts + 1 < NODE_ATTEMPTS => {
                conflicts += 1;
                match read_again(api, &name, desired).await? {
                    Some(again) => write = again,
                    None => return Ok(conflicts),
                }
            }
            sent => return sent.map(|()| conflicts),
        }
    }
}

/// Reads a Node (whose write met a conflict, or whose facts are not known yet) and plans it:
/// `None` when it needs nothing (or is gone).
async fn read_again(
    api: &Api<Node>,
    name: &str,
    desired: Option<&DesiredNode>,
) -> Result<Option<PlannedWrite>> {
    let read = read_node(api, name).await?;
    Ok(read.and_then(
        |(meta, facts)| match planned(name, desired, &meta, Some(Arc::new(facts))) {
            Planned::Write(write) => Some(write),
            Planned::Nothing | Planned::NeedsRead => None,
        },
    ))
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

/// What a Node needs, planned from what is known of it.
enum Planned {
    /// Nothing: it is as the Factory wants it.
    Nothing,
    /// A write that depends on facts not known yet: read the Node first.
    NeedsRead,
    /// This write.
    Write(PlannedWrite),
}

/// Plans the Node `name` from its selection view and, when known, its facts.
fn planned(
    name: &str,
    desired: Option<&DesiredNode>,
    meta: &NodeMeta,
    facts: Option<Arc<NodeFacts>>,
) -> Planned {
    match plan_node(desired, meta, facts.as_deref()) {
        NodeChange::None => Planned::Nothing,
        NodeChange::NeedsFacts => Planned::NeedsRead,
        NodeChange::Apply(change) => Planned::Write(PlannedWrite {
            name: name.to_owned(),
            change,
            facts,
        }),
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

/// Labels and taints the Factory's Nodes and releases those it no longer claims. Which Nodes need
/// a write is decided from `metas` and the facts at the start; each write is planned again just
/// before it is sent, from what the watch (and the operator's own writes) brought since, so a
/// pass of minutes writes with resourceVersions seconds old, not minutes.
pub async fn apply_nodes(ctx: &Context, assignment: &Assignment, metas: &NodeMetas) -> Result<()> {
    let targets: Vec<&NodeName> = assignment
        .desired
        .keys()
        .chain(&assignment.release)
        .collect();
    let facts = ctx.nodes.facts_of(targets.iter().copied());
    let due: Vec<NodeName> = targets
        .into_iter()
        .filter(|name| {
            metas.get(*name).is_some_and(|meta| {
                let desired = assignment.desired.get(*name);
                let known = facts.get(*name).map(AsRef::as_ref);
                plan_node(desired, meta, known) != NodeChange::None
            })
        })
        .cloned()
        .collect();
    drop(facts);
    if due.is_empty() {
        return Ok(());
    }
    tracing::info!(nodes = due.len(), "updating node labels and taints");
    let started = std::time::Instant::now();
    let api = Api::<Node>::all(ctx.kit.client.clone());
    let (written, conflicts, failure) = futures::stream::iter(due)
        .map(|name| {
            let api = api.clone();
            async move {
                let desired = assignment.desired.get(&name);
                write_node(ctx, &api, &name, desired).await
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
        )
        .await;
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
