//! The allocation controller's reads and writes: the ledger ConfigMap (created once, then
//! written only under the resourceVersion it was read at), the Pods' finalizer (merge patches
//! under the Pod's resourceVersion), the closed ResourceQuota, the ClusterQueue's `stopPolicy`,
//! the status, and the admission policy that puts the finalizer on every new GPU Pod.

use std::collections::BTreeMap;

use fabbrica_crds::v1alpha1::{AllocationStatus, Workspace};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::build::{build_closed_quota, build_policy};
use super::meter::{Ledger, POD_FINALIZER};
use super::{CLOSED_QUOTA, Context, FIELD_MANAGER, LEDGER_KEY, LEDGER_LABEL, POLICY};
use crate::reconcile::apply::{Kind, apply_one, delete, patch_params};
use crate::reconcile::children;
use crate::tenancy::Result;

const RESOURCE_QUOTA: Kind = Kind::new("resourcequota");

/// The name of a workspace's ledger ConfigMap (in the operator's namespace).
pub fn ledger_name(workspace: &str) -> String {
    format!("fabbrica-ledger-{workspace}")
}

/// The object named `name`, read with a list (the operator's role grants `list`, not `get`, on
/// these kinds); a consistent read, like a get.
pub async fn find<K>(api: &Api<K>, name: &str) -> Result<Option<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(api.list(&params).await?.items.into_iter().next())
}

/// Whether an API error is a 409 (a precondition or a concurrent writer): the reconcile retries.
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

/// Reads a workspace's ledger and the resourceVersion it was read at (none: no ledger yet).
pub async fn read_ledger(ctx: &Context, workspace: &str) -> Result<(Ledger, Option<String>)> {
    let api = Api::<ConfigMap>::namespaced(ctx.tenancy.kit.client.clone(), &ctx.namespace);
    let Some(map) = find(&api, &ledger_name(workspace)).await? else {
        return Ok((Ledger::default(), None));
    };
    // A ledger that does not parse is an error, never an empty ledger written over it.
    let ledger = match map.data.as_ref().and_then(|d| d.get(LEDGER_KEY)) {
        Some(text) => serde_json::from_str(text)?,
        None => Ledger::default(),
    };
    Ok((ledger, map.resource_version()))
}

/// Writes the ledger: created when there was none (fails if another writer created it first),
/// else applied under the resourceVersion it was read at. `false` on a conflict: nothing was
/// written and the reconcile starts again from a fresh read.
pub async fn write_ledger(
    ctx: &Context,
    workspace: &Workspace,
    ledger: &Ledger,
    read_at: Option<String>,
) -> Result<bool> {
    let kit = &ctx.tenancy.kit;
    let api = Api::<ConfigMap>::namespaced(kit.client.clone(), &ctx.namespace);
    let name = ledger_name(&workspace.name_any());
    let owner = workspace.controller_owner_ref(&());
    let mut map = ConfigMap {
        metadata: children::child_meta(
            name.clone(),
            Some(&ctx.namespace),
            children::child_labels([(LEDGER_LABEL, workspace.name_any().as_str())]),
            owner.as_ref(),
        ),
        data: Some(BTreeMap::from([(
            LEDGER_KEY.to_owned(),
            serde_json::to_string(ledger)?,
        )])),
        ..ConfigMap::default()
    };
    let result = match read_at {
        None => api.create(&PostParams::default(), &map).await.map(drop),
        Some(version) => {
            map.metadata.resource_version = Some(version);
            let mut body = serde_json::to_value(&map)?;
            body["apiVersion"] = json!("v1");
            body["kind"] = json!("ConfigMap");
            api.patch(&name, &patch_params(), &Patch::Apply(&body))
                .await
                .map(drop)
        }
    };
    match result {
        Ok(()) => {
            kit.metrics.write("ledger", "apply");
            Ok(true)
        }
        Err(err) if is_conflict(&err) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Sets `pod`'s finalizers to `finalizers`, under the resourceVersion it was listed at; `false`
/// when it changed (or went) meanwhile.
async fn set_finalizers(ctx: &Context, pod: &Pod, finalizers: Vec<String>) -> Result<bool> {
    let kit = &ctx.tenancy.kit;
    let api = Api::<Pod>::namespaced(kit.client.clone(), &pod.namespace().unwrap_or_default());
    let body = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": pod.resource_version()},
    });
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        Ok(_) => {
            kit.metrics.write("pod", "patch");
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Removes [`POD_FINALIZER`] from a finished Pod whose use is in the ledger.
pub async fn release(ctx: &Context, pod: &Pod) -> Result<bool> {
    let rest: Vec<String> = pod
        .finalizers()
        .iter()
        .filter(|f| *f != POD_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(ctx, pod, rest).await
}

/// Adds [`POD_FINALIZER`] to a GPU Pod that lacks it (created where the admission policy is not
/// served, or before it was).
pub async fn adopt(ctx: &Context, pod: &Pod) -> Result<bool> {
    let mut all = pod.finalizers().to_vec();
    all.push(POD_FINALIZER.to_owned());
    set_finalizers(ctx, pod, all).await
}

/// Closes (`closed`) or opens the namespace's GPU quota: the closed quota exists only while the
/// allocation is closed; the workspace's own quota is never touched.
pub async fn set_quota(ctx: &Context, workspace: &Workspace, closed: bool) -> Result<()> {
    let kit = &ctx.tenancy.kit;
    let namespace = &workspace.spec.namespace;
    let api = Api::<ResourceQuota>::namespaced(kit.client.clone(), namespace);
    let current = find(&api, CLOSED_QUOTA).await?;
    if closed {
        let owner = workspace.controller_owner_ref(&());
        let quota = build_closed_quota(&workspace.name_any(), namespace, owner.as_ref());
        apply_one(kit, &api, RESOURCE_QUOTA, &quota, current.as_ref()).await?;
    } else if current.is_some() {
        delete(kit, &api, RESOURCE_QUOTA.name, CLOSED_QUOTA).await?;
    }
    Ok(())
}

/// Holds (or releases) the workspace's Kueue ClusterQueue, where Kueue is served and the
/// ClusterQueue exists, by applying its `spec.stopPolicy` alone under the allocation's field
/// manager: the Workspace controller, which applies the rest of the ClusterQueue, never owns it.
pub async fn set_queue(ctx: &Context, workspace: &Workspace, policy: &str) -> Result<()> {
    let Some(kueue) = crate::tenancy::workspace::apply::discover_kueue(&ctx.tenancy).await? else {
        return Ok(());
    };
    let kit = &ctx.tenancy.kit;
    let api = Api::<DynamicObject>::all_with(kit.client.clone(), &kueue.cluster_queue);
    let name = workspace.name_any();
    let Some(queue) = find(&api, &name).await? else {
        return Ok(());
    };
    let current = queue.data["spec"]["stopPolicy"].as_str().unwrap_or("None");
    if current == policy {
        return Ok(());
    }
    let body = json!({
        "apiVersion": kueue.cluster_queue.api_version,
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {"stopPolicy": policy},
    });
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    kit.metrics.write("clusterqueue", "apply");
    Ok(())
}

/// Applies `status.allocation` and the `Allocation` condition under the allocation's field
/// manager, so the Workspace controller's status applies leave them alone.
pub async fn write_status(
    ctx: &Context,
    workspace: &Workspace,
    allocation: &AllocationStatus,
    condition: &Condition,
) -> Result<()> {
    let kit = &ctx.tenancy.kit;
    let api = Api::<Workspace>::all(kit.client.clone());
    let body = json!({
        "apiVersion": Workspace::api_version(&()),
        "kind": Workspace::kind(&()),
        "status": {"allocation": allocation, "conditions": [condition]},
    });
    api.patch_status(
        &workspace.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    kit.metrics.write("status", "apply");
    Ok(())
}

/// Applies the admission policy and its binding where `admissionregistration.k8s.io/v1` serves
/// MutatingAdmissionPolicies (Kubernetes 1.36 and later); `false` where it does not, and the
/// operator's Pod watch adds the finalizer instead.
pub async fn ensure_policy(ctx: &Context) -> Result<bool> {
    let kit = &ctx.tenancy.kit;
    let group = "admissionregistration.k8s.io";
    let policy_kind = GroupVersionKind::gvk(group, "v1", "MutatingAdmissionPolicy");
    let binding_kind = GroupVersionKind::gvk(group, "v1", "MutatingAdmissionPolicyBinding");
    let (policy, binding) = build_policy(&format!("{group}/v1"));
    for (gvk, plural, object) in [
        (policy_kind, "mutatingadmissionpolicies", policy),
        (binding_kind, "mutatingadmissionpolicybindings", binding),
    ] {
        let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api = Api::<DynamicObject>::all_with(kit.client.clone(), &resource);
        let current = match find(&api, POLICY).await {
            Ok(current) => current,
            Err(err) if matches!(&err, crate::tenancy::Error::Operator(e) if e.api_status().is_some_and(|s| s.code == 404)) =>
            {
                return Ok(false);
            }
            Err(err) => return Err(err),
        };
        let object: DynamicObject = serde_json::from_value(object)?;
        // The items of a list carry no apiVersion and kind; the comparison needs them.
        let current = current.map(|mut c| {
            c.types = object.types.clone();
            c
        });
        match apply_one(kit, &api, Kind::new(plural), &object, current.as_ref()).await {
            Ok(_) => {}
            Err(err) if err.api_status().is_some_and(|s| s.code == 404) => return Ok(false),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(true)
}
