//! Writes of the Workspace controller: the namespace (only one that is free or already the
//! workspace's), its quota, limits, policies and binding, Kueue's queues where Kueue is served.

use fabbrica_crds::labels;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::discovery;
use kube::{Api, ResourceExt};
use serde_json::Value;

use super::build::{self, child_selector};
use super::status::Observed;
use super::validate::ValidatedWorkspace;
use crate::tenancy::apply::{apply_one, sync_children};
use crate::tenancy::{Context, Result};

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
    let api = Api::<Namespace>::all(ctx.client.clone());
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

/// The served Kueue kinds, by kind, when Kueue's CRDs are installed.
async fn kueue(ctx: &Context) -> Result<Option<Vec<ApiResource>>> {
    match discovery::group(&ctx.client, build::KUEUE_GROUP).await {
        Ok(group) => {
            let resources: Vec<ApiResource> = group
                .recommended_resources()
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            let served = ["ResourceFlavor", "ClusterQueue", "LocalQueue"]
                .iter()
                .all(|k| resources.iter().any(|r| r.kind == *k));
            Ok(served.then_some(resources))
        }
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn dynamic(values: Vec<Value>) -> Result<Vec<DynamicObject>> {
    Ok(values
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?)
}

/// Applies the namespace and everything in it; what is no longer desired is deleted.
pub async fn apply_children(
    ctx: &Context,
    ws: &ValidatedWorkspace,
    current: Option<&Namespace>,
) -> Result<Observed> {
    let client = &ctx.client;
    let namespace = &ws.spec.namespace;
    apply_one(
        ctx,
        &Api::<Namespace>::all(client.clone()),
        "namespace",
        &build::build_namespace(ws),
        current,
    )
    .await?;
    let selector = child_selector(&ws.name);
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), namespace);
    let mut quotas = sync_children(
        ctx,
        &quotas,
        "resourcequota",
        &selector,
        &[build::build_resource_quota(ws)],
    )
    .await?;
    let limits = Api::<LimitRange>::namespaced(client.clone(), namespace);
    sync_children(
        ctx,
        &limits,
        "limitrange",
        &selector,
        &[build::build_limit_range(ws)],
    )
    .await?;
    let policies = build::build_network_policies(ws);
    let api = Api::<NetworkPolicy>::namespaced(client.clone(), namespace);
    sync_children(ctx, &api, "networkpolicy", &selector, &policies).await?;
    let binding: Vec<RoleBinding> = build::build_role_binding(ws).into_iter().collect();
    let members = binding
        .iter()
        .filter_map(|b| b.subjects.as_ref())
        .map(Vec::len)
        .sum();
    let api = Api::<RoleBinding>::namespaced(client.clone(), namespace);
    sync_children(ctx, &api, "rolebinding", &selector, &binding).await?;
    let kueue = kueue(ctx).await?;
    if let Some(resources) = &kueue {
        apply_queues(ctx, ws, resources).await?;
    }
    Ok(Observed {
        quota: quotas.remove(build::QUOTA),
        kueue: kueue.is_some(),
        members,
        policies: policies.len(),
    })
}

async fn apply_queues(
    ctx: &Context,
    ws: &ValidatedWorkspace,
    resources: &[ApiResource],
) -> Result<()> {
    let client = &ctx.client;
    let of = |kind: &str| resources.iter().find(|r| r.kind == kind).cloned();
    let (Some(flavor), Some(cluster_queue), Some(local_queue)) =
        (of("ResourceFlavor"), of("ClusterQueue"), of("LocalQueue"))
    else {
        return Ok(());
    };
    // Flavors are shared by the factory's workspaces: applied when missing or different, never
    // deleted here (they go with their Factory).
    let api = Api::<DynamicObject>::all_with(client.clone(), &flavor);
    let selector = format!(
        "{}={},{}={}",
        labels::FACTORY,
        ws.spec.factory,
        labels::MANAGED_BY,
        labels::MANAGER
    );
    let existing = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    for object in dynamic(build::build_resource_flavors(ws, &flavor.api_version))? {
        let current = existing.iter().find(|e| e.name_any() == object.name_any());
        apply_one(ctx, &api, "resourceflavor", &object, current).await?;
    }
    let selector = child_selector(&ws.name);
    let api = Api::<DynamicObject>::all_with(client.clone(), &cluster_queue);
    let desired = dynamic(vec![build::build_cluster_queue(
        ws,
        &cluster_queue.api_version,
    )])?;
    sync_children(ctx, &api, "clusterqueue", &selector, &desired).await?;
    let api =
        Api::<DynamicObject>::namespaced_with(client.clone(), &ws.spec.namespace, &local_queue);
    let desired = dynamic(vec![build::build_local_queue(ws, &local_queue.api_version)])?;
    sync_children(ctx, &api, "localqueue", &selector, &desired).await?;
    Ok(())
}
