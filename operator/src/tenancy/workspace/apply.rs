//! Writes of the Workspace controller, and the reads before its build: the namespace (only one
//! that is free or already the workspace's) and Kueue's discovery; then the built namespace, its
//! quota, limits, policies and binding, Kueue's queues where Kueue is served.

use std::slice;

use fabbrica_crds::labels;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::discovery;
use kube::{Api, ResourceExt};

use super::build::{self, Desired, KueueApis, Queues, child_selector};
use super::status::Observed;
use super::validate::ValidatedWorkspace;
use crate::reconcile::apply::{Kind, apply_one, dynamic, sync_children};
use crate::reconcile::children;
use crate::tenancy::{Context, Result};

const NAMESPACE: Kind = Kind::new("namespace");
const RESOURCE_QUOTA: Kind = Kind::new("resourcequota");
const LIMIT_RANGE: Kind = Kind::new("limitrange");
const NETWORK_POLICY: Kind = Kind::new("networkpolicy");
const ROLE_BINDING: Kind = Kind::new("rolebinding");
const RESOURCE_FLAVOR: Kind = Kind::new("resourceflavor");
const CLUSTER_QUEUE: Kind = Kind::new("clusterqueue");
const LOCAL_QUEUE: Kind = Kind::new("localqueue");
const TOPOLOGY: Kind = Kind::new("topology");

/// Whether the workspace may use its namespace.
#[derive(Clone, Debug, PartialEq)]
pub enum NamespaceCheck {
    /// Absent, or already the workspace's: apply it.
    Usable(Option<Box<Namespace>>),
    /// It exists and belongs to something else; the message says to what.
    Taken(String),
    /// It is the workspace's but being deleted (the workspace was recreated); wait.
    Terminating,
}

/// Whether `namespace` belongs to the Workspace with this uid.
pub fn owned_by(namespace: &Namespace, uid: &str) -> bool {
    namespace.owner_references().iter().any(|o| o.uid == uid)
}

/// Reads the namespace and says whether the workspace may take it: the operator never adopts a
/// namespace someone else made, since deleting the workspace would then delete it.
pub async fn check_namespace(ctx: &Context, ws: &ValidatedWorkspace) -> Result<NamespaceCheck> {
    let api = Api::<Namespace>::all(ctx.kit.client.clone());
    let Some(namespace) = api.get_opt(&ws.spec.namespace).await? else {
        return Ok(NamespaceCheck::Usable(None));
    };
    if !owned_by(&namespace, &ws.owner.uid) {
        let owner = namespace.labels().get(labels::WORKSPACE).map_or_else(
            || "it was not created for this workspace".to_owned(),
            |other| format!("it belongs to workspace {other:?}"),
        );
        return Ok(NamespaceCheck::Taken(format!(
            "namespace {} already exists and {owner}; fabbrica only uses namespaces it creates: choose another spec.namespace or delete that namespace",
            ws.spec.namespace
        )));
    }
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(NamespaceCheck::Terminating);
    }
    Ok(NamespaceCheck::Usable(Some(Box::new(namespace))))
}

/// Kueue's kinds, when its CRDs are installed and serve all three.
pub async fn discover_kueue(ctx: &Context) -> Result<Option<KueueApis>> {
    match discovery::group(&ctx.kit.client, build::KUEUE_GROUP).await {
        Ok(group) => {
            let resources: Vec<ApiResource> = group
                .recommended_resources()
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            let of = |kind: &str| resources.iter().find(|r| r.kind == kind).cloned();
            Ok(
                match (of("ResourceFlavor"), of("ClusterQueue"), of("LocalQueue")) {
                    (Some(resource_flavor), Some(cluster_queue), Some(local_queue)) => {
                        Some(KueueApis {
                            resource_flavor,
                            cluster_queue,
                            local_queue,
                            topology: of("Topology"),
                        })
                    }
                    _ => None,
                },
            )
        }
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Applies the namespace and everything in it; what is no longer desired is deleted.
pub async fn apply_children(
    ctx: &Context,
    desired: &Desired,
    current: Option<&Namespace>,
) -> Result<Observed> {
    let client = &ctx.kit.client;
    let namespace = desired.namespace.name_any();
    let api = Api::<Namespace>::all(client.clone());
    apply_one(&ctx.kit, &api, NAMESPACE, &desired.namespace, current).await?;
    let selector = child_selector(&desired.workspace);
    let api = Api::<ResourceQuota>::namespaced(client.clone(), &namespace);
    let quota = slice::from_ref(&desired.quota);
    let mut quotas = sync_children(&ctx.kit, &api, RESOURCE_QUOTA, &selector, quota).await?;
    let api = Api::<LimitRange>::namespaced(client.clone(), &namespace);
    let limits = slice::from_ref(&desired.limits);
    sync_children(&ctx.kit, &api, LIMIT_RANGE, &selector, limits).await?;
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), &namespace);
    sync_children(&ctx.kit, &api, NETWORK_POLICY, &selector, &desired.policies).await?;
    let members = desired
        .binding
        .iter()
        .filter_map(|b| b.subjects.as_ref())
        .map(Vec::len)
        .sum();
    // One sync for both bindings: it deletes the workspace's bindings it is not given.
    let bindings: Vec<RoleBinding> = desired
        .binding
        .iter()
        .chain(&desired.operator_binding)
        .cloned()
        .collect();
    let api = Api::<RoleBinding>::namespaced(client.clone(), &namespace);
    sync_children(&ctx.kit, &api, ROLE_BINDING, &selector, &bindings).await?;
    let cluster_queue = match &desired.queues {
        Some(queues) => apply_queues(ctx, desired, queues, &namespace).await?,
        None => None,
    };
    Ok(Observed {
        quota: quotas.remove(build::QUOTA),
        kueue: desired.queues.is_some(),
        cluster_queue,
        members,
        policies: desired.policies.len(),
    })
}

/// Applies the Kueue objects; returns the ClusterQueue as stored (its status is Kueue's report).
async fn apply_queues(
    ctx: &Context,
    desired: &Desired,
    queues: &Queues,
    namespace: &str,
) -> Result<Option<DynamicObject>> {
    let client = &ctx.kit.client;
    let apis = &queues.apis;
    let selector = children::child_selector(labels::FACTORY, &desired.factory);
    // The Topology and the flavors are shared by the factory's workspaces: applied when missing
    // or different, never deleted here (they go with their Factory).
    if let (Some(topology), Some(resource)) = (&queues.topology, &apis.topology) {
        let api = Api::<DynamicObject>::all_with(client.clone(), resource);
        let existing = api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        for object in dynamic(vec![topology.clone()])? {
            let current = existing.iter().find(|e| e.name_any() == object.name_any());
            apply_one(&ctx.kit, &api, TOPOLOGY, &object, current).await?;
        }
    }
    let api = Api::<DynamicObject>::all_with(client.clone(), &apis.resource_flavor);
    let existing = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    for object in dynamic(queues.flavors.clone())? {
        let current = existing.iter().find(|e| e.name_any() == object.name_any());
        apply_one(&ctx.kit, &api, RESOURCE_FLAVOR, &object, current).await?;
    }
    let selector = child_selector(&desired.workspace);
    let api = Api::<DynamicObject>::all_with(client.clone(), &apis.cluster_queue);
    let cluster_queue = dynamic(vec![queues.cluster_queue.clone()])?;
    let mut stored =
        sync_children(&ctx.kit, &api, CLUSTER_QUEUE, &selector, &cluster_queue).await?;
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &apis.local_queue);
    let local_queue = dynamic(vec![queues.local_queue.clone()])?;
    sync_children(&ctx.kit, &api, LOCAL_QUEUE, &selector, &local_queue).await?;
    Ok(stored.remove(&desired.workspace))
}
