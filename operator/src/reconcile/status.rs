//! One status patch for every kind: server-side apply of the status subresource, forced, made
//! only when the status differs from the stored one; and Ready=False with the error of a failed
//! reconcile, on the object itself.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ApiResource, DynamicObject, Patch};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Kit;
use super::apply::patch_params;
use super::conditions::merge_front;
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
    apply_status::<K, _>(kit, api, object, status).await?;
    Ok(true)
}

/// Sends `status` as the status of `object` (of kind `K`) through `api` (typed, or dynamic for
/// kinds handled alike), by forced server-side apply, counts the write and records it, so that
/// its echo triggers nothing.
async fn apply_status<K, A>(
    kit: &Kit,
    api: &Api<A>,
    object: &K,
    status: &impl Serialize,
) -> Result<()>
where
    K: Resource<DynamicType = ()>,
    A: Resource + Clone + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let sending = kit.writes.sending(object.meta().uid.as_deref());
    let stored = api
        .patch_status(&name, &patch_params(), &Patch::Apply(&body))
        .await?;
    kit.metrics.write("status", "apply");
    kit.writes.record(&stored);
    drop(sending);
    Ok(())
}

/// The stored status (`null` when there is none) with `changed` in place of the conditions of
/// the same types, settled against them; every other field and condition as stored, since a
/// forced apply of the status would drop what it leaves out. Pure.
pub fn with_conditions(stored: &Value, changed: Vec<Condition>) -> Result<Value> {
    let mut status = match stored {
        Value::Object(fields) => fields.clone(),
        _ => serde_json::Map::new(),
    };
    let mut conditions: Vec<Condition> = match status.get("conditions") {
        Some(list) => serde_json::from_value(list.clone())?,
        None => Vec::new(),
    };
    merge_front(&mut conditions, changed);
    status.insert("conditions".to_owned(), serde_json::to_value(conditions)?);
    Ok(Value::Object(status))
}

/// Puts `changed` into the conditions of `object`'s status, writing only when that changes it.
/// Works for every kind, whose statuses all keep `conditions` as a list-map by type. The status
/// is the one `object` was read with: a reconcile that fails has not written its status (the
/// Factory's, which writes which parts failed first, says so with `Failure::in_status`), and no
/// extra read is needed, nor the right to make one.
pub async fn patch_conditions<K>(kit: &Kit, object: &K, changed: Vec<Condition>) -> Result<()>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let stored = serde_json::to_value(object)?
        .get("status")
        .cloned()
        .unwrap_or(Value::Null);
    let status = with_conditions(&stored, changed)?;
    if status == stored {
        return Ok(());
    }
    // As JSON, so one function serves cluster-scoped and namespaced kinds alike.
    let resource = ApiResource::erase::<K>(&());
    let api = match object.namespace() {
        Some(namespace) => {
            Api::<DynamicObject>::namespaced_with(kit.client.clone(), &namespace, &resource)
        }
        None => Api::<DynamicObject>::all_with(kit.client.clone(), &resource),
    };
    apply_status::<K, _>(kit, &api, object, &status).await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::conditions::{reasons, types};
    use crate::reconcile::conditions::condition;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    #[test]
    fn a_failure_replaces_ready_and_keeps_every_other_field_and_condition() {
        let pools = condition(
            types::POOLS_READY,
            true,
            "PoolsReady",
            "2 pools",
            Some(1),
            &at(5),
        );
        let ready = condition(
            types::READY,
            true,
            reasons::ALL_READY,
            "ok",
            Some(1),
            &at(5),
        );
        let stored = json!({
            "observedGeneration": 1,
            "gpusReady": 8,
            "conditions": [ready, pools],
        });
        let failed = condition(
            types::READY,
            false,
            reasons::RECONCILE_FAILED,
            "writing ConfigMap x/y failed: namespaces \"x\" not found",
            Some(2),
            &at(9),
        );
        let status = with_conditions(&stored, vec![failed.clone()]).unwrap();
        assert_eq!(status["gpusReady"], 8);
        assert_eq!(status["observedGeneration"], 1);
        let conditions: Vec<Condition> =
            serde_json::from_value(status["conditions"].clone()).unwrap();
        assert_eq!(conditions, vec![failed.clone(), pools]);
        // The same failure again changes nothing, so nothing is written.
        assert_eq!(with_conditions(&status, vec![failed]).unwrap(), status);
    }

    #[test]
    fn a_first_reconcile_that_fails_still_leaves_ready_false() {
        let failed = condition(
            types::READY,
            false,
            reasons::RECONCILE_FAILED,
            "listing configmaps failed: forbidden",
            None,
            &at(9),
        );
        let status = with_conditions(&Value::Null, vec![failed]).unwrap();
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "ReconcileFailed");
    }
}
