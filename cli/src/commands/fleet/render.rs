//! `fabbrica fleet render`: every site of a fleet rendered as `blueprint render` renders one,
//! each into `<out>/<site>/`, with the same safety: nothing is written unless every site
//! checks, and never into a non-empty folder without `--force`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use fabbrica_site::grouped;
use serde::Serialize;

use crate::fleet_file::{assemble, base_dir, load, or_report, plan};
use crate::output::{Output, emit};
use crate::site_render::{File, is_empty_dir, progress, render, write};

/// Render every site of a fleet into a folder of its own.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fleet file (YAML, kind Fleet).
    #[arg(value_name = "FLEET")]
    pub fleet: PathBuf,
    /// Directory to write, one folder per site; must be empty or absent unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty directory, overwriting the files the render produces.
    #[arg(long)]
    pub force: bool,
    /// The most GPU Nodes one cluster holds, for every site; by default each site's own
    /// (`spec.cells.maxNodes`, 5000).
    #[arg(long, value_name = "NODES", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_nodes_per_cluster: Option<u32>,
    /// Git URL under which each site's repository lives (`<URL>/<site>.git`); Argo CD and Flux
    /// sync from it.
    #[arg(long, value_name = "URL", env = "FABBRICA_REPO_URL_BASE")]
    pub repo_url_base: Option<String>,
    /// Output format of the summary: text, or json/yaml for pipelines.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// What `-o json` reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    out: String,
    fleet: String,
    sites: Vec<SiteSummary>,
    total_bytes: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SiteSummary {
    site: String,
    folder: String,
    gpus: u64,
    clusters: usize,
    files: usize,
    bytes: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = args.fleet.display().to_string();
    let fleet = load(&args.fleet)?;
    if !args.force && !is_empty_dir(&args.out)? {
        anyhow::bail!(
            "{} is not empty; render into a new or empty directory, or pass --force to overwrite the files the render writes",
            args.out.display()
        );
    }
    let Some(sites) = or_report(&args.fleet, assemble(&fleet, &base_dir(&args.fleet))) else {
        return Ok(ExitCode::from(1));
    };
    let Some(planned) = or_report(&args.fleet, plan(&sites, args.max_nodes_per_cluster)) else {
        return Ok(ExitCode::from(1));
    };
    let base = args
        .repo_url_base
        .clone()
        .unwrap_or_else(|| format!("https://git.example.com/{}", fleet.spec.name));
    // Every site is rendered (and checked) before anything is written.
    let bar = progress(planned.len() as u64);
    let mut rendered: Vec<(String, Vec<File>)> = Vec::new();
    for p in &planned {
        let name = p.site.name().to_owned();
        bar.set_message(format!("rendering {name}"));
        let url = format!("{}/{name}.git", base.trim_end_matches('/'));
        let files = render(&p.valid, &p.plan, p.max_nodes, &url, |_| {})
            .map_err(|e| anyhow::anyhow!("{source}: spec.sites[{}]: {e:#}", p.site.index))?;
        rendered.push((name, files));
        bar.inc(1);
    }
    bar.set_length(
        planned.len() as u64 + rendered.iter().map(|(_, f)| f.len() as u64).sum::<u64>(),
    );
    for (name, files) in &rendered {
        write(&args.out.join(name), files, &bar)?;
    }
    bar.finish_and_clear();
    let sites: Vec<SiteSummary> = planned
        .iter()
        .zip(&rendered)
        .map(|(p, (name, files))| SiteSummary {
            site: name.clone(),
            folder: args.out.join(name).display().to_string(),
            gpus: p.plan.gpus,
            clusters: p.cells.len(),
            files: files.len(),
            bytes: files.iter().map(|f| f.bytes.len() as u64).sum(),
        })
        .collect();
    let summary = Summary {
        out: args.out.display().to_string(),
        fleet: fleet.spec.name.clone(),
        total_bytes: sites.iter().map(|s| s.bytes).sum(),
        sites,
    };
    emit(args.output, &summary, |s| {
        let mut text = String::new();
        for site in &s.sites {
            let _ = writeln!(
                text,
                "{:>12}  {}/ ({} GPUs, {} cluster{}, {} files)",
                site.bytes,
                site.folder,
                grouped(site.gpus),
                site.clusters,
                if site.clusters == 1 { "" } else { "s" },
                site.files
            );
        }
        let _ = writeln!(
            text,
            "rendered fleet {}: {} sites, {} bytes in {}",
            s.fleet,
            s.sites.len(),
            grouped(s.total_bytes),
            s.out
        );
        text
    })?;
    Ok(ExitCode::SUCCESS)
}
