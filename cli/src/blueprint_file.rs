//! Site blueprint files as `plan` and `blueprint` read them: YAML or JSON, a
//! field no part of the blueprint reads refused by name, then validated and sized
//! with every problem told. (`validate` reads blueprints among the other kinds in
//! `documents.rs`, with the same unknown-field check and the same validation.)

use std::path::Path;

use fabbrica_site::{self as site, Plan, SiteBlueprint, ValidBlueprint};

use crate::documents::{self, Loaded, Object};

/// Reads a blueprint file: one document of kind `SiteBlueprint`, every problem named with
/// its field path, as `validate` names it.
pub fn load(path: &Path) -> anyhow::Result<SiteBlueprint> {
    one_blueprint(documents::load_file(path), &path.display().to_string())
}

/// Parses a blueprint; a field no part of it reads is an error that names the valid ones.
pub fn parse(text: &str) -> anyhow::Result<SiteBlueprint> {
    one_blueprint(documents::load_str("<input>", text), "<input>")
}

fn one_blueprint(loaded: Loaded, source: &str) -> anyhow::Result<SiteBlueprint> {
    let Loaded {
        mut documents,
        problems,
    } = loaded;
    if documents.len() > 1 {
        anyhow::bail!(
            "{source} holds {} documents; valid: one SiteBlueprint",
            documents.len()
        );
    }
    if let Some(document) = documents.first()
        && !document.label.starts_with(&format!("{}/", site::KIND))
        && !document.label.starts_with("<no kind>/")
    {
        anyhow::bail!(
            "{source}[0] {}: kind: not a site blueprint; valid: {}",
            document.label,
            site::KIND
        );
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}", lines.join("\n"));
    }
    match documents.pop().and_then(|d| d.object) {
        Some(Object::SiteBlueprint(blueprint)) => Ok(*blueprint),
        _ => anyhow::bail!("{source}: not a site blueprint; valid: {}", site::KIND),
    }
}

/// Validates and sizes a blueprint, or explains on stderr every problem with its field path.
pub fn plan_or_report<'a>(
    blueprint: &'a SiteBlueprint,
    source: &str,
) -> Option<(ValidBlueprint<'a>, Plan)> {
    match site::validate(blueprint) {
        Ok(valid) => {
            let plan = site::plan(&valid);
            Some((valid, plan))
        }
        Err(problems) => {
            for problem in &problems.0 {
                eprintln!("{source}: {problem}");
            }
            eprintln!(
                "{source}: {}; nothing sized",
                crate::output::count(problems.0.len(), "problem")
            );
            None
        }
    }
}
