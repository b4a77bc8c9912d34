//! Children by server-side apply under the one field manager, compared with what exists first
//! (a reconcile with nothing changed writes nothing), children no longer desired deleted, and a
//! child whose immutable fields changed recreated. Every write is counted in the `api_writes`
//! metric.

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Kit;
use crate::{Error, FIELD_MANAGER, Result};

/// Server-side apply under the operator's field manager, taking over fields others set.
pub fn patch_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

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

/// Objects of a kind the API server serves but no crate types (Multus, Kueue), from their JSON.
pub fn dynamic(values: Vec<Value>) -> Result<Vec<DynamicObject>> {
    Ok(values
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?)
}

/// How children of one kind are named in metrics and compared with what exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// The kind's label in the `api_writes` metric and in logs.
    pub name: &'static str,
    /// Top-level fields fabbrica alone writes (a ConfigMap's `data`): they must be equal, not
    /// merely contain the declaration, so that a key dropped from it is noticed.
    pub exact: &'static [&'static str],
    /// Top-level fields the API server refuses to change: a difference there deletes the child
    /// and applies it anew.
    pub immutable: &'static [&'static str],
}

impl Kind {
    /// A kind compared by containment, with nothing immutable.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            exact: &[],
            immutable: &[],
        }
    }

    /// With these top-level fields compared for equality.
    pub const fn exact(self, exact: &'static [&'static str]) -> Self {
        Self { exact, ..self }
    }

    /// With these top-level fields immutable.
    pub const fn immutable(self, immutable: &'static [&'static str]) -> Self {
        Self { immutable, ..self }
    }

    /// Whether the stored `existing` already is the `desired` object.
    pub fn matches(&self, existing: &Value, desired: &Value) -> bool {
        contains(existing, desired) && self.exact.iter().all(|f| existing.get(f) == desired.get(f))
    }

    /// Whether `desired` differs from `existing` in an immutable field.
    pub fn must_recreate(&self, existing: &Value, desired: &Value) -> bool {
        self.immutable
            .iter()
            .any(|f| desired.get(f).is_some_and(|w| existing.get(f) != Some(w)))
    }
}

/// Applies `object` unless `current` already is it (recreating it when an immutable field
/// changed); returns the object as stored.
pub async fn apply_one<K>(
    kit: &Kit,
    api: &Api<K>,
    kind: Kind,
    object: &K,
    current: Option<&K>,
) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let want = serde_json::to_value(object)?;
    if let Some(current) = current {
        let have = serde_json::to_value(current)?;
        if kind.matches(&have, &want) {
            return Ok(current.clone());
        }
        if kind.must_recreate(&have, &want) {
            tracing::info!(kind = kind.name, %name, "an immutable field changed; recreating");
            delete(kit, api, kind.name, &name).await?;
        }
    }
    let sending = kit
        .writes
        .sending(current.and_then(|c| c.meta().uid.as_deref()));
    let stored = api
        .patch(&name, &patch_params(), &Patch::Apply(&want))
        .await
        .map_err(|err| Error::request("writing", described(&want, kind, api, &name), err))?;
    kit.metrics.write(kind.name, "apply");
    kit.writes.record(&stored);
    drop(sending);
    Ok(stored)
}

/// An object as a person names it: `ConfigMap gpu-operator/x`, `StorageClass bench-scratch`.
/// The kind comes from the object's JSON, else from `kind`'s label.
pub fn described<K: Resource>(object: &Value, kind: Kind, api: &Api<K>, name: &str) -> String {
    let title = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(kind.name);
    object_name(title, api.namespace(), name)
}

/// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
pub fn object_name(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Makes the children of one kind that `selector` picks in `api` exactly `desired`: applies what
/// differs, deletes what is no longer desired. Returns the children as stored, by name.
pub async fn sync_children<K>(
    kit: &Kit,
    api: &Api<K>,
    kind: Kind,
    selector: &str,
    desired: &[K],
) -> Result<BTreeMap<String, K>>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let mut existing: BTreeMap<String, K> = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|err| {
            let scope = api
                .namespace()
                .map(|ns| format!(" in namespace {ns}"))
                .unwrap_or_default();
            Error::request("listing", format!("{}s{scope}", kind.name), err)
        })?
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
            apply_one(kit, api, kind, object, current.as_ref()).await?,
        );
    }
    for name in existing.keys() {
        tracing::info!(kind = kind.name, %name, "no longer declared; deleting");
        delete(kit, api, kind.name, name).await?;
    }
    Ok(stored)
}

/// Deletes an object; one that is already gone is fine.
pub async fn delete<K>(kit: &Kit, api: &Api<K>, kind: &str, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            kit.metrics.write(kind, "delete");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(Error::request(
            "deleting",
            object_name(kind, api.namespace(), name),
            err,
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CLASS: Kind = Kind::new("storageclass")
        .exact(&["parameters"])
        .immutable(&["provisioner", "parameters"]);

    #[test]
    fn what_the_server_adds_is_no_difference_but_a_dropped_exact_key_is() {
        let desired =
            json!({"metadata": {"name": "a"}, "provisioner": "x", "parameters": {"k": "1"}});
        let stored = json!({
            "metadata": {"name": "a", "uid": "u", "resourceVersion": "7"},
            "provisioner": "x",
            "parameters": {"k": "1"},
            "allowVolumeExpansion": true,
        });
        assert!(CLASS.matches(&stored, &desired));
        assert!(!CLASS.must_recreate(&stored, &desired));
        let mut extra = stored.clone();
        extra["parameters"]["dropped"] = json!("2");
        assert!(!CLASS.matches(&extra, &desired), "a key no longer declared");
        assert!(
            Kind::new("configmap").matches(&extra, &desired),
            "without exact fields, containment is enough"
        );
        let mut moved = desired.clone();
        moved["provisioner"] = json!("y");
        assert!(!CLASS.matches(&stored, &moved));
        assert!(CLASS.must_recreate(&stored, &moved));
        assert!(!Kind::new("configmap").must_recreate(&stored, &moved));
    }

    #[test]
    fn lists_must_match_element_by_element() {
        let desired = json!({"items": [{"a": 1}, {"b": 2}]});
        assert!(contains(
            &json!({"items": [{"a": 1, "x": 0}, {"b": 2}]}),
            &desired
        ));
        assert!(!contains(&json!({"items": [{"a": 1}]}), &desired));
        assert!(!contains(&json!({"items": [{"b": 2}, {"a": 1}]}), &desired));
    }
}
