//! One status patch for every kind: server-side apply of the status subresource, forced, made
//! only when the status differs from the stored one.

use std::fmt::Debug;

use kube::api::Patch;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Kit;
use super::apply::patch_params;
use crate::Result;

/// Applies `status` to `object`'s status subresource when it differs from `stored`; `true` when
/// it wrote.
pub async fn patch_status<K, S>(
    kit: &Kit,
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
    api.patch_status(&object.name_any(), &patch_params(), &Patch::Apply(&body))
        .await?;
    kit.metrics.write("status", "apply");
    Ok(true)
}
