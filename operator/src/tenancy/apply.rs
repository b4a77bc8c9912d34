//! Writes shared by the tenancy controllers: children by server-side apply (only when they differ
//! from what exists), children no longer desired deleted, status written only when it changed.
//! Every write is counted in the `api_writes` metric.

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use super::Result;
use crate::FIELD_MANAGER;
use crate::factory::apply::contains;

/// Server-side apply under the operator's field manager, taking over fields others set.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `object` unless `current` already has every field it declares; returns the object as stored.
pub async fn apply_one<K>(
    ctx: &Context,
    api: &Api<K>,
    kind: &str,
    object: &K,
    current: Option<&K>,
) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let want = serde_json::to_value(object)?;
    if let Some(current) = current
        && contains(&serde_json::to_value(current)?, &want)
    {
        return Ok(current.clone());
    }
    let stored = api
        .patch(&object.name_any(), &apply_params(), &Patch::Apply(&want))
        .await?;
    ctx.metrics.write(kind, "apply");
    Ok(stored)
}

/// Makes the children of one kind that `selector` picks in `api` exactly `desired`: applies what
/// differs, deletes what is no longer desired. Returns the children as stored, by name.
pub async fn sync_children<K>(
    ctx: &Context,
    api: &Api<K>,
    kind: &str,
    selector: &str,
    desired: &[K],
) -> Result<BTreeMap<String, K>>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let mut existing: BTreeMap<String, K> = api
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .map(|o| (o.name_any(), o))
        .collect();
    let mut stored = BTreeMap::new();
    for object in desired {
        let name = object.name_any();
        let current = existing.remove(&name);
        stored.insert(
            name,
            apply_one(ctx, api, kind, object, current.as_ref()).await?,
        );
    }
    for name in existing.keys() {
        tracing::info!(kind, %name, "no longer declared; deleting");
        delete(ctx, api, kind, name).await?;
    }
    Ok(stored)
}

/// Deletes an object; one that is already gone is fine.
pub async fn delete<K>(ctx: &Context, api: &Api<K>, kind: &str, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            ctx.metrics.write(kind, "delete");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Applies `status` to `object`'s status subresource when it differs from the stored one; `true`
/// when it wrote.
pub async fn patch_status<K, S>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    stored: Option<&S>,
    status: &S,
) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if stored == Some(status) {
        return Ok(false);
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&object.name_any(), &apply_params(), &Patch::Apply(&body))
        .await?;
    ctx.metrics.write("status", "apply");
    Ok(true)
}
