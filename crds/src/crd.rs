//! The CustomResourceDefinitions, generated from the types. The checked-in copies
//! in `crds/yaml/` are compared with these by a test.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::v1alpha1::{Factory, JupyterEnvironment, Maintenance, Workspace};

/// Every CRD fabbrica serves, in the order they should be applied.
pub fn all() -> Vec<CustomResourceDefinition> {
    [
        Factory::crd(),
        Workspace::crd(),
        JupyterEnvironment::crd(),
        Maintenance::crd(),
    ]
    .into_iter()
    .map(without_unsigned_formats)
    .collect()
}

/// schemars marks unsigned integers `format: uint32`, a format the API server does not know
/// and warns about on every apply; the `minimum: 0` beside it already says what it means.
fn without_unsigned_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                let unsigned = map
                    .get("format")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|f| f.starts_with("uint"));
                if unsigned {
                    map.remove("format");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(crd).expect("a CRD serializes to JSON");
    strip(&mut value);
    serde_json::from_value(value).expect("a CRD without formats is still a CRD")
}

/// The file name of a CRD in `crds/yaml/`: `<plural>.fabbrica.io.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default())
}

/// A CRD as YAML, with a header saying where it comes from.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_saphyr::to_string(crd).expect("a CRD serializes to YAML");
    format!(
        "# Generated from the fabbrica-crds types; do not edit. Regenerate: fabbrica crds --write crds/yaml\n{body}"
    )
}

/// Every CRD as one multi-document YAML stream.
pub fn all_yaml() -> String {
    all().iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The checked-in YAML is what `kubectl apply` and the Helm chart use; it must match the types.
    #[test]
    fn checked_in_yaml_matches_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
        for crd in all() {
            let path = dir.join(file_name(&crd));
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == to_yaml(&crd),
                "{} differs from the types; regenerate with `cargo run -p fabbrica -- crds --write crds/yaml`",
                path.display()
            );
        }
    }

    #[test]
    fn crds_carry_names_categories_and_status() {
        for crd in all() {
            let names = &crd.spec.names;
            assert_eq!(
                names.categories.as_deref(),
                Some(&["fabbrica".to_owned()][..])
            );
            assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
            let version = &crd.spec.versions[0];
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
            assert!(
                version
                    .additional_printer_columns
                    .as_ref()
                    .is_some_and(|c| c.len() >= 4)
            );
        }
    }
}
