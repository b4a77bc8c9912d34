//! `fabbrica blueprint new`: a complete, commented site blueprint with a tier's defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use fabbrica_site as site;

use crate::site_args::SiteFlags;
use crate::site_render::site_yaml::commented;

/// Write a site blueprint for a tier, GPU count and system.
#[derive(Debug, clap::Args)]
// The site flags are `plan`'s, but a new blueprint is asked for a tier and a size.
#[command(
    mut_arg("tier", |a| a.required(true).default_value(None::<&str>)),
    mut_arg("gpus", |a| a.required(true)),
)]
pub struct Args {
    #[command(flatten)]
    pub site: SiteFlags,
    /// Write the blueprint to this file instead of stdout; an existing file is not overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(gpus) = args.site.gpus else {
        anyhow::bail!("give --gpus N");
    };
    let blueprint = args.site.blueprint(gpus);
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
    use crate::blueprint_file::parse;

    /// A new blueprint is asked for a tier and a size; `plan` defaults the tier.
    #[test]
    fn a_new_blueprint_needs_a_tier_and_gpus() {
        use clap::Parser;
        let parses = |line: &str| crate::Cli::try_parse_from(line.split_whitespace()).is_ok();
        assert!(!parses("fabbrica blueprint new --gpus 8"));
        assert!(!parses("fabbrica blueprint new --tier aiFactory"));
        assert!(parses("fabbrica blueprint new --tier ai-factory --gpus 8"));
        assert!(parses("fabbrica plan --gpus 8"));
    }

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
