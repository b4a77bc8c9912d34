//! Checks a document against its CRD's `openAPIV3Schema`, as the API server would
//! at admission, so `fabbrica validate` catches type, enum, range and pattern
//! errors without a cluster.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde_json::Value;

/// A schema violation.
#[derive(Debug)]
pub struct Violation {
    /// Field path (`spec.gpuPools[0].expectedNodes`).
    pub path: String,
    /// What the schema requires.
    pub message: String,
}

/// Per kind, the validator and the schema it was built from (which names the valid fields).
type Schemas = BTreeMap<String, (jsonschema::Validator, Value)>;

static VALIDATORS: LazyLock<Schemas> = LazyLock::new(|| {
    fabbrica_crds::crd::all()
        .into_iter()
        .filter_map(|crd| {
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()?
                .open_api_v3_schema
                .as_ref()?;
            let mut schema = serde_json::to_value(schema).ok()?;
            openapi_to_json_schema(&mut schema);
            // The root lists only spec and status; apiVersion, kind and metadata are implied.
            if let Some(root) = schema.as_object_mut() {
                root.remove("additionalProperties");
            }
            let validator = jsonschema::draft4::new(&schema)
                .expect("generated CRD schemas are valid JSON Schema");
            Some((crd.spec.names.kind, (validator, schema)))
        })
        .collect()
});

/// Every violation of the schema of `kind`; none for kinds without a CRD.
pub fn check(kind: &str, document: &Value) -> Vec<Violation> {
    let Some((validator, schema)) = VALIDATORS.get(kind) else {
        return Vec::new();
    };
    let mut violations = Vec::new();
    for err in validator.iter_errors(document) {
        let path = field_path(err.instance_path().iter());
        if let ValidationErrorKind::AdditionalProperties { unexpected } = err.kind() {
            // Where the schema's `additionalProperties: false` is, its `properties` are.
            let at = err.schema_path().as_str();
            let valid = schema
                .pointer(at.strip_suffix("/additionalProperties").unwrap_or(at))
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            for field in unexpected {
                violations.push(Violation {
                    path: if path.is_empty() {
                        field.clone()
                    } else {
                        format!("{path}.{field}")
                    },
                    message: format!(
                        "unknown field (the API server refuses it, or drops it without strict field validation); valid: {valid}"
                    ),
                });
            }
        } else {
            violations.push(Violation {
                path,
                message: err.to_string(),
            });
        }
    }
    violations
}

fn field_path<'a>(segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            LocationSegment::Property(name) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&name);
            }
            LocationSegment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

/// OpenAPI's `nullable: true` is JSON Schema's `type: [T, "null"]`; an object that lists
/// its properties and does not preserve unknown fields has no others, as the API server's
/// strict field validation (kubectl's default) holds.
fn openapi_to_json_schema(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && map.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type").cloned()
            {
                map.insert("type".into(), serde_json::json!([t, "null"]));
            }
            map.values_mut().for_each(openapi_to_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(openapi_to_json_schema),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_and_mistyped_fields_are_named() {
        let doc = serde_json::json!({
            "apiVersion": "fabbrica.io/v1alpha1", "kind": "Workspace", "metadata": {"name": "w"},
            "spec": {"factory": "f", "namespace": "Not_A_Label", "tenant": {"name": "t", "kind": "bank"},
                     "gpuQuota": [{"pool": "a", "gpus": "many"}]}
        });
        let paths: Vec<_> = check("Workspace", &doc)
            .into_iter()
            .map(|v| v.path)
            .collect();
        for expected in [
            "spec.namespace",
            "spec.tenant.kind",
            "spec.gpuQuota[0].gpus",
        ] {
            assert!(
                paths.contains(&expected.to_owned()),
                "{expected} missing from {paths:?}"
            );
        }
    }
}
