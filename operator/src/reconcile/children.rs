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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_carry_their_owner_and_the_managed_by_marker_and_are_selected_by_both() {
        let labels = child_labels([(labels::FACTORY, "bench")]);
        assert_eq!(labels[labels::FACTORY], "bench");
        assert_eq!(labels[labels::MANAGED_BY], labels::MANAGER);
        assert_eq!(
            child_selector(labels::FACTORY, "bench"),
            "fabbrica.io/factory=bench,app.kubernetes.io/managed-by=fabbrica-operator"
        );
        let owner = OwnerReference {
            name: "bench".to_owned(),
            ..OwnerReference::default()
        };
        let meta = child_meta("c", Some("ns"), labels.clone(), Some(&owner));
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        assert_eq!(meta.owner_references, Some(vec![owner]));
        assert_eq!(child_meta("c", None, labels, None).owner_references, None);
    }
}
