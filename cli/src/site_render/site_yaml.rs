//! `site.yaml`: a blueprint as a person edits it, every field commented, written by
//! `blueprint new` and into every rendered repository.

use fabbrica_site::{Plan, ValidBlueprint};

use super::templates;

/// The commented YAML of a blueprint and its plan; `file` is the name the comments refer to it by.
pub fn commented(
    blueprint: &ValidBlueprint<'_>,
    plan: &Plan,
    file: &str,
) -> anyhow::Result<String> {
    let mut context = tera::Context::new();
    context.insert("bp", blueprint.blueprint());
    context.insert("plan", plan);
    context.insert("file", file);
    templates::render("site.yaml", &context)
}
