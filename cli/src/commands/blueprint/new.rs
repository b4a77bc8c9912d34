//! `fabbrica blueprint new`: a complete, commented site blueprint with a tier's defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use fabbrica_site::{self as site, Plan, ValidBlueprint};

use super::templates;
use crate::commands::plan::{Fabric, SiteFlags, Tier};

/// Write a site blueprint for a tier, GPU count and system.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Site tier.
    #[arg(long, value_enum)]
    pub tier: Tier,
    /// GPUs the site targets.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub gpus: u32,
    /// GPU system: dgx-h100, dgx-h200, dgx-b200 or gb200-nvl72.
    #[arg(long, value_parser = crate::commands::plan::parse_system, default_value = "dgx-h100")]
    pub system: fabbrica_crds::v1alpha1::GpuSystem,
    /// Compute fabric generation; by default ndr for an AI Factory, xdr for a Gigafactory.
    #[arg(long, value_enum)]
    pub fabric: Option<Fabric>,
    /// Site name, a DNS label.
    #[arg(long, value_name = "NAME", default_value = "site")]
    pub site: String,
    /// ISO 3166-1 alpha-2 country code of the site.
    #[arg(long, default_value = "IT")]
    pub country: String,
    /// Write the blueprint to this file instead of stdout; an existing file is not overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let flags = SiteFlags {
        gpus: Some(args.gpus),
        system: args.system,
        fabric: args.fabric,
        nodes_per_su: None,
        tier: args.tier,
        site: args.site,
        country: args.country,
    };
    let blueprint = flags.blueprint(args.gpus);
    let valid = match site::validate(&blueprint) {
        Ok(valid) => valid,
        Err(problems) => {
            for problem in &problems.0 {
                eprintln!("command line: {problem}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let plan = site::plan(&valid);
    match &args.out {
        None => print!("{}", commented(&valid, &plan, "site.yaml")?),
        Some(path) => {
            let name = path
                .file_name()
                .map_or("site.yaml".into(), |n| n.to_string_lossy());
            let text = commented(&valid, &plan, &name)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| {
                    format!(
                        "creating {} (an existing file is never overwritten)",
                        path.display()
                    )
                })?;
            std::io::Write::write_all(&mut file, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use fabbrica_crds::v1alpha1::{GpuSystem, SiteTier};
    use fabbrica_site::{NewSite, new_site};

    use super::*;
    use crate::commands::plan::parse;

    /// The file a user edits reads back as exactly the blueprint it was written from.
    #[test]
    fn written_blueprints_read_back_unchanged() {
        for (tier, gpus, system) in [
            (SiteTier::AiFactory, 2048, GpuSystem::DgxH100),
            (SiteTier::Gigafactory, 100_000, GpuSystem::Gb200Nvl72),
        ] {
            let bp = new_site(&NewSite {
                name: "it4lia".into(),
                country: "IT".into(),
                tier,
                gpus,
                system,
                generation: None,
            });
            let valid = site::validate(&bp).unwrap();
            let text = commented(&valid, &site::plan(&valid), "site.yaml").unwrap();
            assert_eq!(parse(&text).unwrap(), bp, "{text}");
            assert!(text.contains("# Usable capacities."), "{text}");
        }
    }
}
