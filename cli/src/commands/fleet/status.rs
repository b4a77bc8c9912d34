//! `fabbrica fleet status`: every site of a fleet read from its own cluster, one table: GPUs
//! ready of expected, tenants, GPU-hour budgets used of granted. A site whose cluster cannot be
//! read gets a line saying which context and why, and the others are still shown.
//!
//! A site of one cluster is read through the kubeconfig context its entry names (`context`, by
//! default the site's name); a site of several cells through one context per cell, the site's
//! context with the cell's suffix (`<context>-c01`, `<context>-c02` ...).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use fabbrica_crds::capacity::gpus_expected;
use fabbrica_crds::v1alpha1::{Factory, Workspace};
use fabbrica_site::grouped;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde::Serialize;

use crate::fleet_file::{assemble, base_dir, load, or_report, plan};
use crate::output::{Output, emit, table};

/// Read every site's cluster and show the fleet in one table.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fleet file (YAML, kind Fleet).
    #[arg(value_name = "FLEET")]
    pub fleet: PathBuf,
    /// Kubeconfig file holding the sites' contexts; by default `KUBECONFIG` or `~/.kube/config`.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Seconds to wait for each cluster before reporting it unreachable.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
    /// Output format: text for people, json or yaml for pipelines.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// What `fabbrica fleet status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// The fleet's name.
    pub fleet: String,
    /// One entry per cluster of every site, in file order.
    pub clusters: Vec<ClusterStatus>,
}

/// One cluster: a site, or a cell of one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The site.
    pub site: String,
    /// The kubeconfig context read.
    pub context: String,
    /// Whether the cluster answered.
    pub reachable: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The site's Factories found (those whose `spec.site.name` is the site's).
    pub factories: u32,
    /// Physical GPUs ready, as the operator reports them.
    pub gpus_ready: u64,
    /// Physical GPUs the Factories' pools expect.
    pub gpus_expected: u64,
    /// The GPUs the site's plan builds for this cluster.
    pub gpus_planned: u64,
    /// Workspaces of those Factories.
    pub tenants: u32,
    /// GPU-hours used, over the workspaces with an allocation.
    pub used_gpu_hours: f64,
    /// GPU-hours granted, over the workspaces with an allocation.
    pub granted_gpu_hours: f64,
}

/// The figures of one cluster from its Factories and Workspaces.
pub fn cluster_figures(
    status: &mut ClusterStatus,
    factories: &[Factory],
    workspaces: &[Workspace],
) {
    status.reachable = true;
    status.factories = factories.len() as u32;
    status.gpus_ready = factories
        .iter()
        .map(|f| f.status.as_ref().map_or(0, |s| s.gpus_ready))
        .sum();
    status.gpus_expected = factories
        .iter()
        .flat_map(|f| &f.spec.gpu_pools)
        .map(gpus_expected)
        .sum();
    status.tenants = workspaces.len() as u32;
    for ws in workspaces {
        if let Some(a) = &ws.spec.allocation {
            status.granted_gpu_hours += a.granted_gpu_hours();
            status.used_gpu_hours += ws
                .status
                .as_ref()
                .and_then(|s| s.allocation.as_ref())
                .map_or(0.0, |m| m.used_gpu_hours);
        }
    }
}

async fn read(
    kubeconfig: Option<&Path>,
    context: &str,
    timeout: Duration,
) -> anyhow::Result<(Vec<Factory>, Vec<Workspace>)> {
    let kubeconfig = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .with_context(|| format!("reading the kubeconfig {}", path.display()))?,
        None => {
            Kubeconfig::read().context("reading the kubeconfig (KUBECONFIG or ~/.kube/config)")?
        }
    };
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("no usable context {context:?} in the kubeconfig"))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    let client = Client::try_from(config)?;
    let params = ListParams::default();
    let lists = async {
        let factories = Api::<Factory>::all(client.clone())
            .list(&params)
            .await?
            .items;
        let workspaces = Api::<Workspace>::all(client).list(&params).await?.items;
        Ok::<_, kube::Error>((factories, workspaces))
    };
    match tokio::time::timeout(timeout, lists).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("no answer within {} s", timeout.as_secs()),
    }
}

/// Reads every cluster of the fleet file at `path` through the contexts of `kubeconfig` (by
/// default `KUBECONFIG` or `~/.kube/config`), or explains on stderr every problem of the file.
pub fn fleet_status(
    path: &Path,
    kubeconfig: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<Option<FleetStatus>> {
    let fleet = load(path)?;
    let Some(sites) = or_report(path, assemble(&fleet, &base_dir(path))) else {
        return Ok(None);
    };
    let Some(planned) = or_report(path, plan(&sites, None)) else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut clusters = Vec::new();
    for p in &planned {
        let single = p.cells.len() == 1;
        for cell in &p.cells {
            let context = if single {
                p.site.context.clone()
            } else {
                let suffix = cell.name.rsplit('-').next().unwrap_or_default();
                format!("{}-{suffix}", p.site.context)
            };
            let mut status = ClusterStatus {
                site: if single {
                    p.site.name().to_owned()
                } else {
                    cell.name.clone()
                },
                context: context.clone(),
                gpus_planned: cell.gpus,
                ..ClusterStatus::default()
            };
            match runtime.block_on(read(kubeconfig, &context, timeout)) {
                Ok((factories, workspaces)) => {
                    // The site's own Factories (its cells' too), and their Workspaces.
                    let factories: Vec<Factory> = factories
                        .into_iter()
                        .filter(|f| f.spec.site.name == p.site.name())
                        .collect();
                    let names: Vec<String> = factories.iter().map(|f| f.name_any()).collect();
                    let workspaces: Vec<Workspace> = workspaces
                        .into_iter()
                        .filter(|w| names.contains(&w.spec.factory))
                        .collect();
                    cluster_figures(&mut status, &factories, &workspaces);
                }
                Err(e) => status.error = Some(format!("{e:#}")),
            }
            clusters.push(status);
        }
    }
    Ok(Some(FleetStatus {
        fleet: fleet.spec.name.clone(),
        clusters,
    }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let Some(status) = fleet_status(&args.fleet, args.kubeconfig.as_deref(), timeout)? else {
        return Ok(ExitCode::from(1));
    };
    emit(args.output, &status, text)?;
    // Unreachable clusters are shown, not fatal: the exit code says whether all answered.
    Ok(if status.clusters.iter().all(|c| c.reachable) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The table a person reads, then a line per cluster that did not answer.
pub fn text(status: &FleetStatus) -> String {
    let mut out = String::new();
    let reachable: Vec<&ClusterStatus> = status.clusters.iter().filter(|c| c.reachable).collect();
    let rows: Vec<Vec<String>> = status
        .clusters
        .iter()
        .map(|c| {
            if c.reachable {
                vec![
                    c.site.clone(),
                    c.context.clone(),
                    format!("{}/{}", grouped(c.gpus_ready), grouped(c.gpus_expected)),
                    grouped(c.gpus_planned),
                    c.tenants.to_string(),
                    if c.granted_gpu_hours > 0.0 {
                        format!(
                            "{}/{}",
                            grouped(c.used_gpu_hours.round() as u64),
                            grouped(c.granted_gpu_hours.round() as u64)
                        )
                    } else {
                        "-".to_owned()
                    },
                    if c.factories == 0 {
                        "no Factory".to_owned()
                    } else {
                        "ok".to_owned()
                    },
                ]
            } else {
                vec![
                    c.site.clone(),
                    c.context.clone(),
                    "-".into(),
                    grouped(c.gpus_planned),
                    "-".into(),
                    "-".into(),
                    "unreachable".into(),
                ]
            }
        })
        .collect();
    table(
        &mut out,
        &format!(
            "Fleet {}: {} of {} clusters answered",
            status.fleet,
            reachable.len(),
            status.clusters.len()
        ),
        &[
            "SITE",
            "CONTEXT",
            "GPUS READY",
            "PLANNED",
            "TENANTS",
            "GPU-HOURS USED",
            "STATE",
        ],
        &rows,
    );
    for c in status.clusters.iter().filter(|c| !c.reachable) {
        let _ = writeln!(
            out,
            "{}: cannot reach context {:?}: {}",
            c.site,
            c.context,
            c.error.as_deref().unwrap_or("no answer")
        );
    }
    out
}
