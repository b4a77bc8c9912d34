//! Fields a blueprint file sets that no part of a [`SiteBlueprint`] reads.
//!
//! The blueprint's own structs deny unknown fields when parsed. The parts it shares with the custom
//! resources (`spec.site`, `spec.notebooks`, `spec.storage.tiers[]` ...) accept them, as they must:
//! the API server prunes what a CRD does not declare. A file has no API server, so a misspelt field
//! there would be ignored in silence; this finds every such field and names the valid ones.

use std::sync::LazyLock;

use serde_json::Value;

use crate::fleet::Fleet;
use crate::spec::SiteBlueprint;

/// A field no part of the blueprint reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// Its path (`spec.site.contry`, `spec.tenants[0].quota.gpu`).
    pub path: String,
    /// The fields valid in its place, if the schema lists them.
    pub valid: Vec<String>,
}

impl UnknownField {
    /// What is wrong, without the path.
    pub fn message(&self) -> String {
        if self.valid.is_empty() {
            "unknown field".to_owned()
        } else {
            format!("unknown field; valid: {}", self.valid.join(", "))
        }
    }
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Every field of `document` that reading it as a [`SiteBlueprint`] ignores, in document order.
/// A document that is not a blueprint at all yields nothing; parsing it reports that.
pub fn unknown_fields(document: &Value) -> Vec<UnknownField> {
    unknown_in::<SiteBlueprint>(document, &SCHEMA)
}

/// Every field of `document` that reading it as a [`Fleet`] ignores (the parts a fleet shares
/// with the custom resources: the notebook catalog, each inline blueprint's site and tiers ...).
pub fn unknown_fleet_fields(document: &Value) -> Vec<UnknownField> {
    unknown_in::<Fleet>(document, &FLEET_SCHEMA)
}

fn unknown_in<T: serde::de::DeserializeOwned>(
    document: &Value,
    schema: &Value,
) -> Vec<UnknownField> {
    let mut ignored = Vec::new();
    let read: Result<T, _> = serde_ignored::deserialize(document.clone(), |path| {
        let mut segments = Vec::new();
        collect(&path, &mut segments);
        ignored.push(segments);
    });
    if read.is_err() {
        return Vec::new();
    }
    ignored
        .into_iter()
        .map(|segments| {
            let parent = &segments[..segments.len().saturating_sub(1)];
            UnknownField {
                path: dotted(&segments),
                valid: valid_fields(schema, parent),
            }
        })
        .collect()
}

fn collect(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            collect(parent, out);
            out.push(Segment::Index(*index));
        }
        Path::Map { parent, key } => {
            collect(parent, out);
            out.push(Segment::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            collect(parent, out);
        }
    }
}

fn dotted(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

/// The blueprint's JSON Schema, as `schemars` derives it from the types.
static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::to_value(schemars::schema_for!(SiteBlueprint)).unwrap_or(Value::Null)
});

/// The fleet's JSON Schema.
static FLEET_SCHEMA: LazyLock<Value> =
    LazyLock::new(|| serde_json::to_value(schemars::schema_for!(Fleet)).unwrap_or(Value::Null));

/// The property names the schema allows at `parent`, sorted.
fn valid_fields(root: &Value, parent: &[Segment]) -> Vec<String> {
    let mut node = Some(root);
    for segment in parent {
        node = node.and_then(|n| match segment {
            Segment::Key(key) => object_schema(root, n)?
                .get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| object_schema(root, n)?.get("additionalProperties")),
            Segment::Index(_) => array_schema(root, n)?.get("items"),
        });
    }
    let mut names: Vec<String> = node
        .and_then(|n| object_schema(root, n))
        .and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// `node` with its `$ref` followed.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .unwrap_or(node),
        None => node,
    }
}

/// The schema that describes an object at `node`: itself, or the first of its `anyOf`/`oneOf`/
/// `allOf` alternatives (an `Option` is `anyOf: [T, null]`) that has properties.
fn object_schema<'a>(root: &'a Value, node: &'a Value) -> Option<&'a Value> {
    find(root, node, &|n| n.get("properties").is_some())
}

fn array_schema<'a>(root: &'a Value, node: &'a Value) -> Option<&'a Value> {
    find(root, node, &|n| n.get("items").is_some())
}

fn find<'a>(root: &'a Value, node: &'a Value, fits: &dyn Fn(&Value) -> bool) -> Option<&'a Value> {
    let node = resolve(root, node);
    if fits(node) {
        return Some(node);
    }
    ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|k| node.get(k).and_then(Value::as_array))
        .flatten()
        .find_map(|alternative| find(root, alternative, fits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blueprint() -> Value {
        let site = crate::new_site(&crate::NewSite {
            name: "test".into(),
            country: "IT".into(),
            tier: fabbrica_crds::v1alpha1::SiteTier::AiFactory,
            gpus: 1024,
            system: fabbrica_crds::v1alpha1::GpuSystem::DgxB200,
            generation: None,
        });
        serde_json::to_value(site).expect("a blueprint serializes")
    }

    #[test]
    fn a_blueprint_as_written_has_no_unknown_field() {
        assert_eq!(unknown_fields(&blueprint()), Vec::new());
    }

    #[test]
    fn misspelt_fields_in_shared_parts_are_named_with_the_valid_ones() {
        let mut document = blueprint();
        document["spec"]["site"]["contry"] = "IT".into();
        document["spec"]["storage"]["tiers"][0]["capacty"] = "1Pi".into();
        let unknown = unknown_fields(&document);
        let paths: Vec<&str> = unknown.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(paths, ["spec.site.contry", "spec.storage.tiers[0].capacty"]);
        assert_eq!(unknown[0].valid, ["country", "name", "tier"]);
        assert!(unknown[1].valid.contains(&"capacity".to_owned()));
        assert_eq!(
            unknown[0].to_string(),
            "spec.site.contry: unknown field; valid: country, name, tier"
        );
    }

    #[test]
    fn a_document_that_is_no_blueprint_reports_nothing_here() {
        assert_eq!(
            unknown_fields(&serde_json::json!({"kind": "Pod"})),
            Vec::new()
        );
    }
}
