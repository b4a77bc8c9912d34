//! `fabbrica validate`: every problem of every document, with file, index and field path.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use fabbrica_crds::v1alpha1::{FactorySpec, WorkspaceSpec};
use fabbrica_crds::validation::{self, Problems};
use serde::Serialize;

use crate::documents::{self, Document, Located, Object};
use crate::output::{Output, emit};

/// Check Factory, Workspace, JupyterEnvironment, SiteBlueprint and Fleet specs and list every problem.
///
/// Checks what the API server would (types, enums, ranges, patterns) and what it
/// cannot (rules across fields and objects, the GPU catalog, quotas). Objects are
/// checked against each other across all the files given. Exits 1 when anything is invalid.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML files (several documents each) or JSON files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// The result of a validation, as `-o json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// No problem found.
    pub valid: bool,
    /// Files read.
    pub files: usize,
    /// Documents read.
    pub documents: usize,
    /// Every problem.
    pub problems: Vec<Located>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = validate(&args.files);
    emit(args.output, &report, text)?;
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report as a person reads it: every problem, then a summary line.
fn text(report: &Report) -> String {
    let mut out = String::new();
    for problem in &report.problems {
        let _ = writeln!(out, "{problem}");
    }
    let summary = format!(
        "{} in {}",
        crate::output::count(report.documents, "document"),
        crate::output::count(report.files, "file")
    );
    if report.valid {
        let _ = writeln!(out, "valid: {summary}");
    } else {
        let _ = writeln!(
            out,
            "invalid: {} in {summary}",
            crate::output::count(report.problems.len(), "problem")
        );
    }
    out
}

/// Reads and checks the files.
pub fn validate(files: &[PathBuf]) -> Report {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let loaded = documents::load_file(file);
        documents.extend(loaded.documents);
        problems.extend(loaded.problems);
    }
    problems.extend(check_objects(&documents));
    problems.extend(repeated_names(&documents));
    problems.sort();
    Report {
        valid: problems.is_empty(),
        files: files.len(),
        documents: documents.len(),
        problems,
    }
}

/// An object declared twice (same kind, namespace and name): applied together, the
/// second would silently replace the first.
fn repeated_names(documents: &[Document]) -> Vec<Located> {
    let mut seen: BTreeMap<(String, Option<String>, String), &Document> = BTreeMap::new();
    let mut located = Vec::new();
    for d in documents {
        let (kind, namespace) = match &d.object {
            Some(Object::Factory(_)) => ("Factory", None),
            Some(Object::Workspace(_)) => ("Workspace", None),
            Some(Object::JupyterEnvironment(j)) => (
                "JupyterEnvironment",
                Some(
                    j.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
            ),
            _ => continue,
        };
        let name = d.label.split_once('/').map(|(_, n)| n).unwrap_or_default();
        let key = (kind.to_owned(), namespace, name.to_owned());
        if let Some(first) = seen.get(&key) {
            located.push(Located {
                file: d.file.clone(),
                document: Some(d.index),
                object: d.label.clone(),
                path: "metadata.name".into(),
                message: format!(
                    "{} is declared more than once (first in {}[{}]); valid: one object per name",
                    d.label, first.file, first.index
                ),
            });
        } else {
            seen.insert(key, d);
        }
    }
    located
}

/// The rules of `fabbrica_crds::validation`, with each object's peers found among the documents.
fn check_objects(documents: &[Document]) -> Vec<Located> {
    let name = |d: &Document| {
        d.label
            .split_once('/')
            .map(|(_, n)| n.to_owned())
            .unwrap_or_default()
    };
    let mut factories: BTreeMap<String, &FactorySpec> = BTreeMap::new();
    let mut workspaces: Vec<(String, &WorkspaceSpec)> = Vec::new();
    for d in documents {
        match &d.object {
            Some(Object::Factory(f)) => {
                factories.insert(name(d), &f.spec);
            }
            Some(Object::Workspace(w)) => workspaces.push((name(d), &w.spec)),
            _ => {}
        }
    }
    let mut located = Vec::new();
    let mut report = |d: &Document, result: Result<(), Problems>| {
        if let Err(Problems(problems)) = result {
            located.extend(problems.into_iter().map(|p| Located {
                file: d.file.clone(),
                document: Some(d.index),
                object: d.label.clone(),
                path: p.path,
                message: p.message,
            }));
        }
    };
    for d in documents {
        match &d.object {
            Some(Object::Factory(f)) => report(d, validation::validate_factory(&f.spec)),
            Some(Object::Workspace(w)) => {
                let me = name(d);
                let others: Vec<_> = workspaces
                    .iter()
                    .filter(|(n, _)| *n != me)
                    .map(|(n, s)| (n.as_str(), *s))
                    .collect();
                let factory = factories.get(&w.spec.factory).copied();
                report(d, validation::validate_workspace(&w.spec, factory, &others));
            }
            Some(Object::JupyterEnvironment(j)) => {
                let namespace = j.metadata.namespace.as_deref().unwrap_or("default");
                let workspace = workspaces
                    .iter()
                    .find(|(_, w)| w.namespace == namespace)
                    .map(|(_, w)| *w);
                if let Some(workspace) = workspace
                    && let Some(factory) = factories.get(&workspace.factory)
                {
                    report(d, validation::validate_jupyter(&j.spec, factory, workspace));
                }
            }
            Some(Object::SiteBlueprint(b)) => report(d, fabbrica_site::validate(b).map(|_| ())),
            Some(Object::Fleet(fleet)) => {
                // A fleet's site paths are relative to its file.
                let dir = crate::fleet_file::base_dir(std::path::Path::new(&d.file));
                let problems = crate::fleet_file::problems(fleet, &dir);
                report(
                    d,
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        Err(Problems(problems))
                    },
                );
            }
            None => {}
        }
    }
    located
}
