//! What every child carries: the labels naming its owner and the managed-by marker, the
//! selector that finds the owner's children again, and its metadata with the owner reference.
//! Pure.

use std::collections::BTreeMap;

use fabbrica_crds::labels;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The labels of a child: `owners` (label key and value, e.g. `fabbrica.io/factory=bench`) and
/// the managed-by marker.
pub fn child_labels<'a>(
    owners: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    owners
        .into_iter()
        .chain([(labels::MANAGED_BY, labels::MANAGER)])
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The selector of the children whose label `key` is `owner` and that the operator manages.
pub fn child_selector(key: &str, owner: &str) -> String {
    format!("{key}={owner},{}={}", labels::MANAGED_BY, labels::MANAGER)
}

/// A child's metadata: name, namespace (none when cluster-scoped), labels and, when given, the
/// controller owner reference.
pub fn child_meta(
    name: impl Into<String>,
    namespace: Option<&str>,
    labels: BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..ObjectMeta::default()
    }
}
