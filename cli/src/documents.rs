//! Reading spec files: multi-document YAML or JSON, each document typed by its
//! `apiVersion` and `kind`, with problems located by file, document and field path.

use std::path::Path;

use fabbrica_crds::v1alpha1::{Factory, JupyterEnvironment, Workspace};
use fabbrica_crds::validation::Problems;
use fabbrica_site::SiteBlueprint;
use fabbrica_site::fleet::{FLEET_KIND, Fleet};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A fabbrica object read from a file.
#[derive(Clone, Debug)]
pub enum Object {
    /// A Factory.
    Factory(Box<Factory>),
    /// A Workspace.
    Workspace(Box<Workspace>),
    /// A JupyterEnvironment.
    JupyterEnvironment(Box<JupyterEnvironment>),
    /// A site blueprint (the CLI's input, not a cluster object).
    SiteBlueprint(Box<SiteBlueprint>),
    /// A fleet of sites (the CLI's input, not a cluster object).
    Fleet(Box<Fleet>),
}

/// One document of one file.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file it came from.
    pub file: String,
    /// Its index in the file, from 0.
    pub index: usize,
    /// `Kind/name`, for messages.
    pub label: String,
    /// The typed object, when the document is a fabbrica kind and well-formed.
    pub object: Option<Object>,
}

/// A problem located in a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Located {
    /// The file.
    pub file: String,
    /// The document's index in the file, from 0; absent when the file itself is unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// `Kind/name` of the object.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// Field path from the object's root.
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(i) = self.document {
            write!(f, "[{i}]")?;
        }
        if !self.object.is_empty() {
            write!(f, " {}", self.object)?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// What a file held: its documents, and the problems found while reading them.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every document, fabbrica kind or not.
    pub documents: Vec<Document>,
    /// Problems of syntax, types and schema.
    pub problems: Vec<Located>,
}

/// Reads a file of YAML documents (JSON is YAML too), within the bounds of [`crate::yaml`].
pub fn load_file(path: &Path) -> Loaded {
    let file = path.display().to_string();
    match crate::yaml::read_text(path) {
        Ok(text) => load_str(&file, &text),
        Err(message) => Loaded {
            documents: Vec::new(),
            problems: vec![file_problem(&file, message)],
        },
    }
}

fn file_problem(file: &str, message: String) -> Located {
    Located {
        file: file.to_owned(),
        document: None,
        object: String::new(),
        path: String::new(),
        message,
    }
}

/// Reads YAML documents from text; `file` names it in problems.
pub fn load_str(file: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    let values = match crate::yaml::documents(text) {
        Ok(values) => values,
        Err(message) => {
            loaded.problems.push(file_problem(
                file,
                format!("not valid YAML or JSON: {message}"),
            ));
            return loaded;
        }
    };
    if values.is_empty() {
        loaded.problems.push(file_problem(
            file,
            "holds no document; valid: one or more YAML or JSON objects".into(),
        ));
    }
    for (index, value) in values.into_iter().enumerate() {
        let (document, problems) = read_document(file, index, value);
        loaded.documents.push(document);
        loaded.problems.extend(problems);
    }
    loaded
}

fn read_document(file: &str, index: usize, value: Value) -> (Document, Vec<Located>) {
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let kind = text(&value, "kind");
    let api_version = text(&value, "apiVersion");
    // A site blueprint and a fleet have no metadata; their spec names them.
    let name = value
        .pointer("/metadata/name")
        .or_else(|| value.pointer("/spec/site/name"))
        .or_else(|| value.pointer("/spec/name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let label = if kind.is_empty() {
        format!("<no kind>/{name}")
    } else {
        format!("{kind}/{name}")
    };
    let locate = |path: String, message: String| Located {
        file: file.to_owned(),
        document: Some(index),
        object: label.clone(),
        path,
        message,
    };
    let mut problems = Vec::new();
    // The API server's rules for names, which no schema states.
    let mut name_problems = Vec::new();
    if kind != fabbrica_site::KIND
        && kind != FLEET_KIND
        && let Err(Problems(found)) = fabbrica_crds::validation::validate_object_name(
            &kind,
            value.pointer("/metadata/name").and_then(Value::as_str),
        )
    {
        name_problems.extend(found.into_iter().map(|p| locate(p.path, p.message)));
    }
    let is_ours = api_version.split('/').next() == Some(fabbrica_crds::v1alpha1::GROUP);
    let object = if !is_ours {
        if kind.is_empty() || api_version.is_empty() {
            problems.push(locate(
                String::new(),
                "not a Kubernetes object: apiVersion and kind are required".into(),
            ));
        }
        None
    } else if api_version
        != format!(
            "{}/{}",
            fabbrica_crds::v1alpha1::GROUP,
            fabbrica_crds::v1alpha1::VERSION
        )
    {
        problems.push(locate(
            "apiVersion".into(),
            format!("{api_version:?} is not served; valid: fabbrica.io/v1alpha1"),
        ));
        None
    } else {
        for problem in crate::schema::check(&kind, &value) {
            problems.push(locate(problem.path, problem.message));
        }
        let typed = match kind.as_str() {
            "Factory" => typed::<Factory>(value).map(|o| Object::Factory(Box::new(o))),
            "Workspace" => typed::<Workspace>(value).map(|o| Object::Workspace(Box::new(o))),
            "JupyterEnvironment" => {
                typed::<JupyterEnvironment>(value).map(|o| Object::JupyterEnvironment(Box::new(o)))
            }
            "SiteBlueprint" => {
                for unknown in fabbrica_site::unknown_fields(&value) {
                    problems.push(locate(unknown.path.clone(), unknown.message()));
                }
                typed::<SiteBlueprint>(value).map(|o| Object::SiteBlueprint(Box::new(o)))
            }
            FLEET_KIND => {
                for unknown in fabbrica_site::unknown_fleet_fields(&value) {
                    problems.push(locate(unknown.path.clone(), unknown.message()));
                }
                typed::<Fleet>(value).map(|o| Object::Fleet(Box::new(o)))
            }
            other => Err((
                "kind".to_owned(),
                format!(
                    "{other:?} is not a fabbrica kind; valid: Factory, Workspace, JupyterEnvironment, SiteBlueprint, Fleet"
                ),
            )),
        };
        match typed {
            Ok(object) => Some(object),
            Err((path, message)) => {
                // The schema check already explains type errors with their field path.
                if problems.is_empty() {
                    problems.push(locate(path, message));
                }
                None
            }
        }
    };
    if is_ours {
        problems.extend(name_problems);
    }
    (
        Document {
            file: file.to_owned(),
            index,
            label,
            object,
        },
        problems,
    )
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, err.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_document_and_skips_other_kinds() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\nkind: Workspace\napiVersion: fabbrica.io/v1alpha1\nmetadata: {name: w}\nspec: {}\n";
        let loaded = load_str("f.yaml", text);
        assert_eq!(loaded.documents.len(), 2);
        assert!(loaded.documents[0].object.is_none());
        assert!(!loaded.problems.is_empty());
        assert!(
            loaded
                .problems
                .iter()
                .all(|p| p.document == Some(1) && p.object == "Workspace/w"),
            "{:?}",
            loaded.problems
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let loaded = load_str("bad.yaml", "kind: [unclosed\n");
        assert_eq!(loaded.problems.len(), 1);
        assert!(
            loaded.problems[0].message.contains("line"),
            "{}",
            loaded.problems[0].message
        );
    }
}
