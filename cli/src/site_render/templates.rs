//! The tera templates under `blueprints/templates/`, compiled into the binary
//! so a rendered site depends on nothing but the fabbrica version.

use std::sync::LazyLock;

use tera::{Context, Tera};

const TEMPLATES: [(&str, &str); 4] = [
    (
        "site.yaml",
        include_str!("../../../blueprints/templates/site.yaml.tera"),
    ),
    (
        "README.md",
        include_str!("../../../blueprints/templates/README.md.tera"),
    ),
    (
        "argocd.yaml",
        include_str!("../../../blueprints/templates/argocd.yaml.tera"),
    ),
    (
        "flux.yaml",
        include_str!("../../../blueprints/templates/flux.yaml.tera"),
    ),
];

static TERA: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_templates(TEMPLATES)
        .expect("the embedded templates parse (checked by a unit test)");
    tera
});

/// Renders one embedded template.
pub fn render(name: &str, context: &Context) -> anyhow::Result<String> {
    TERA.render(name, context).map_err(|e| {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        anyhow::anyhow!("template {name}: {message}")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_templates_parse() {
        assert_eq!(
            super::TERA.get_template_names().count(),
            super::TEMPLATES.len()
        );
    }
}
