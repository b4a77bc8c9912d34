//! Site blueprint files as `plan` and `blueprint` read them: YAML or JSON, a
//! field no part of the blueprint reads refused by name, then validated and sized
//! with every problem told. (`validate` reads blueprints among the other kinds in
//! `documents.rs`, with the same unknown-field check and the same validation.)

use std::path::Path;

use anyhow::Context;
use fabbrica_site::{self as site, Plan, SiteBlueprint, ValidBlueprint};

/// Reads a blueprint file.
pub fn load(path: &Path) -> anyhow::Result<SiteBlueprint> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a site blueprint", path.display()))
}

/// Parses a blueprint; a field no part of it reads is an error that names the valid ones.
pub fn parse(text: &str) -> anyhow::Result<SiteBlueprint> {
    let blueprint = serde_saphyr::from_str(text)?;
    let document: serde_json::Value = serde_saphyr::from_str(text)?;
    let unknown = site::unknown_fields(&document);
    if !unknown.is_empty() {
        let lines: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}", lines.join("\n"));
    }
    Ok(blueprint)
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
            eprintln!("{source}: {} problem(s); nothing sized", problems.0.len());
            None
        }
    }
}
