//! `fabbrica status`: a factory at a glance, read from a live cluster: pools with GPUs ready of
//! expected, storage tiers, workspaces with their quota used of granted, their notebooks, and
//! the maintenance under way.
//! `-o json` is a stable interface for pipelines.

use std::fmt::Write;
use std::process::ExitCode;

use anyhow::Context;
use fabbrica_crds::capacity::{gpus_expected, gpus_granted, physical_gpus};
use fabbrica_crds::names::storage_class_name;
use fabbrica_crds::v1alpha1::{
    Factory, JupyterEnvironment, Maintenance, QuotaUsage, Workspace, condition,
};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::output::{Output, emit, table};

/// Show a factory at a glance: pools, tiers, workspaces and their notebooks.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only this Factory; by default every Factory of the cluster.
    #[arg(long, value_name = "NAME")]
    pub factory: Option<String>,
    /// Output format: text for people, json or yaml for pipelines.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// Everything `fabbrica status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One entry per Factory.
    pub factories: Vec<FactoryReport>,
}

/// One Factory.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FactoryReport {
    pub name: String,
    pub site: String,
    pub country: String,
    pub tier: String,
    /// The Ready condition's status: `True`, `False`, or `Unknown` before the operator reported.
    pub ready: String,
    pub gpus_ready: u64,
    pub gpus_expected: u64,
    pub pools: Vec<PoolReport>,
    pub tiers: Vec<TierReport>,
    pub workspaces: Vec<WorkspaceReport>,
    /// Maintenance under way on the Factory's Nodes (not finished ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenances: Vec<MaintenanceReport>,
}

/// One Maintenance under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceReport {
    pub name: String,
    /// `drain`, `agentSignal` or `reboot`.
    pub action: String,
    /// `Pending`, `Running`, `Paused`, `Invalid`, or `Unknown` before the operator reported.
    pub phase: String,
    /// The wave being worked on (from 0), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<u32>,
    pub waves: u32,
    pub nodes_done: u32,
    pub nodes_failed: u32,
    pub nodes_total: u32,
    /// What holds it, or what it does now.
    pub message: String,
}

/// One GPU pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolReport {
    pub name: String,
    pub system: String,
    pub nodes_ready: u32,
    pub nodes_expected: u32,
    pub gpus_ready: u64,
    pub gpus_expected: u64,
}

/// One storage tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierReport {
    pub name: String,
    pub role: String,
    pub storage_class: String,
    pub capacity: String,
}

/// One Workspace.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceReport {
    pub name: String,
    pub tenant: String,
    pub namespace: String,
    pub ready: String,
    pub gpus_used: u64,
    pub gpus_granted: u64,
    /// Quota used and granted per resource, as the namespace's ResourceQuota reports it.
    pub quota: Vec<QuotaUsage>,
    /// The GPU-hour allocation: used of granted and until when; none without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation: Option<BudgetReport>,
    pub environments: Vec<EnvironmentReport>,
}

/// A workspace's GPU-hour allocation.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetReport {
    pub mode: String,
    /// GPU-hours used in the allocation's period, as the operator last metered them.
    pub used_gpu_hours: f64,
    pub granted_gpu_hours: f64,
    pub start: String,
    pub end: String,
    /// `NotStarted`, `Open`, `Warning`, `Exhausted`, `Ended`, or `Unknown` before the operator
    /// reported.
    pub state: String,
}

/// One JupyterEnvironment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentReport {
    pub name: String,
    pub image: String,
    pub pool: String,
    pub gpus: u32,
    /// `Pending`, `Running`, `Refused`, or `Unknown` before the operator reported.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

const UNKNOWN: &str = "Unknown";

fn ready(
    conditions: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
) -> String {
    conditions
        .and_then(|c| condition(c, "Ready"))
        .map_or_else(|| UNKNOWN.to_owned(), |c| c.status.clone())
}

fn json_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The report of `factories` (only `only`, when given), their workspaces and environments.
pub fn report(
    factories: &[Factory],
    workspaces: &[Workspace],
    environments: &[JupyterEnvironment],
    only: Option<&str>,
) -> Report {
    let mut factories: Vec<&Factory> = factories
        .iter()
        .filter(|f| only.is_none_or(|name| f.name_any() == name))
        .collect();
    factories.sort_by_key(|f| f.name_any());
    let factories = factories
        .into_iter()
        .map(|factory| factory_report(factory, workspaces, environments))
        .collect();
    Report { factories }
}

fn factory_report(
    factory: &Factory,
    workspaces: &[Workspace],
    environments: &[JupyterEnvironment],
) -> FactoryReport {
    let name = factory.name_any();
    let status = factory.status.clone().unwrap_or_default();
    let pools: Vec<PoolReport> = factory
        .spec
        .gpu_pools
        .iter()
        .map(|pool| {
            let observed = status
                .pools
                .iter()
                .find(|p| p.name == pool.name)
                .cloned()
                .unwrap_or_default();
            PoolReport {
                name: pool.name.clone(),
                system: pool.system.to_string(),
                nodes_ready: observed.nodes_ready,
                nodes_expected: pool.expected_nodes,
                // Allocatable counts shared slices; a person reads physical GPUs, which the
                // operator reports (an older one did not: they are derived from allocatable).
                gpus_ready: observed.gpus_ready.unwrap_or_else(|| {
                    physical_gpus(pool, observed.gpus_allocatable, observed.nodes_ready)
                }),
                gpus_expected: gpus_expected(pool),
            }
        })
        .collect();
    let tiers = factory
        .spec
        .storage_tiers
        .iter()
        .map(|tier| TierReport {
            name: tier.name.clone(),
            role: json_name(&tier.role),
            storage_class: storage_class_name(&name, &tier.name),
            capacity: tier.capacity.0.clone(),
        })
        .collect();
    let mut members: Vec<&Workspace> = workspaces
        .iter()
        .filter(|w| w.spec.factory == name)
        .collect();
    members.sort_by_key(|w| w.name_any());
    let workspaces = members
        .into_iter()
        .map(|ws| workspace_report(ws, environments))
        .collect();
    FactoryReport {
        site: factory.spec.site.name.clone(),
        country: factory.spec.site.country.clone(),
        tier: json_name(&factory.spec.site.tier),
        ready: ready(factory.status.as_ref().map(|s| s.conditions.as_slice())),
        gpus_ready: status.gpus_ready,
        gpus_expected: pools.iter().map(|p| p.gpus_expected).sum(),
        pools,
        tiers,
        workspaces,
        maintenances: Vec::new(),
        name,
    }
}

fn workspace_report(ws: &Workspace, environments: &[JupyterEnvironment]) -> WorkspaceReport {
    let status = ws.status.clone().unwrap_or_default();
    let mut notebooks: Vec<&JupyterEnvironment> = environments
        .iter()
        .filter(|e| e.namespace().as_deref() == Some(ws.spec.namespace.as_str()))
        .collect();
    notebooks.sort_by_key(|e| e.name_any());
    WorkspaceReport {
        name: ws.name_any(),
        tenant: ws.spec.tenant.name.clone(),
        namespace: ws.spec.namespace.clone(),
        ready: ready(ws.status.as_ref().map(|s| s.conditions.as_slice())),
        gpus_used: status.gpus_used,
        gpus_granted: gpus_granted(&ws.spec),
        quota: status.quota,
        allocation: ws.spec.allocation.as_ref().map(|a| {
            let metered = status.allocation.as_ref();
            BudgetReport {
                mode: a.mode.clone(),
                used_gpu_hours: metered.map_or(0.0, |m| m.used_gpu_hours),
                granted_gpu_hours: a.granted_gpu_hours(),
                start: a.start.clone(),
                end: a.end.clone(),
                state: metered.map_or_else(|| UNKNOWN.to_owned(), |m| m.state.as_str().to_owned()),
            }
        }),
        environments: notebooks
            .into_iter()
            .map(|env| {
                let status = env.status.clone().unwrap_or_default();
                EnvironmentReport {
                    name: env.name_any(),
                    image: env.spec.image.clone(),
                    pool: env.spec.profile.pool.clone(),
                    gpus: env.spec.profile.gpus,
                    phase: status.phase.unwrap_or_else(|| UNKNOWN.to_owned()),
                    url: status.url,
                }
            })
            .collect(),
    }
}

/// Adds to each Factory of `report` the Maintenances of its Nodes that are not finished.
pub fn add_maintenances(report: &mut Report, maintenances: &[Maintenance]) {
    const FINISHED: [&str; 3] = ["Succeeded", "Failed", "Cancelled"];
    for factory in &mut report.factories {
        let mut running: Vec<&Maintenance> = maintenances
            .iter()
            .filter(|m| m.spec.factory == factory.name)
            .filter(|m| {
                let phase = m.status.as_ref().and_then(|s| s.phase.as_deref());
                !phase.is_some_and(|p| FINISHED.contains(&p))
            })
            .collect();
        running.sort_by_key(|m| m.name_any());
        factory.maintenances = running
            .into_iter()
            .map(|m| {
                let status = m.status.clone().unwrap_or_default();
                MaintenanceReport {
                    name: m.name_any(),
                    action: m.spec.action.type_.as_str().to_owned(),
                    phase: status.phase.unwrap_or_else(|| UNKNOWN.to_owned()),
                    current_wave: status.current_wave,
                    waves: status.waves.len() as u32,
                    nodes_done: status.nodes_done,
                    nodes_failed: status.nodes_failed,
                    nodes_total: status.nodes_total,
                    message: status.message.unwrap_or_default(),
                }
            })
            .collect();
    }
}

/// The report as tables a person reads.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    if report.factories.is_empty() {
        out.push_str("no Factory found\n");
    }
    for f in &report.factories {
        let _ = writeln!(
            out,
            "Factory {} (site {}, {}, {}): Ready {}, {} of {} GPUs ready\n",
            f.name, f.site, f.country, f.tier, f.ready, f.gpus_ready, f.gpus_expected
        );
        let pools: Vec<Vec<String>> = f
            .pools
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.system.clone(),
                    format!("{}/{}", p.nodes_ready, p.nodes_expected),
                    format!("{}/{}", p.gpus_ready, p.gpus_expected),
                ]
            })
            .collect();
        table(
            &mut out,
            "GPU pools",
            &["POOL", "SYSTEM", "NODES READY", "GPUS READY"],
            &pools,
        );
        let tiers: Vec<Vec<String>> = f
            .tiers
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.role.clone(),
                    t.storage_class.clone(),
                    t.capacity.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            "Storage tiers",
            &["TIER", "ROLE", "STORAGECLASS", "CAPACITY"],
            &tiers,
        );
        let workspaces: Vec<Vec<String>> = f
            .workspaces
            .iter()
            .map(|w| {
                let storage: Vec<String> = w
                    .quota
                    .iter()
                    .filter_map(|q| {
                        let class = q
                            .resource
                            .strip_suffix(".storageclass.storage.k8s.io/requests.storage")?;
                        Some(format!("{class} {}/{}", q.used, q.granted))
                    })
                    .collect();
                vec![
                    w.name.clone(),
                    w.tenant.clone(),
                    w.namespace.clone(),
                    format!("{}/{}", w.gpus_used, w.gpus_granted),
                    if storage.is_empty() {
                        "-".to_owned()
                    } else {
                        storage.join(", ")
                    },
                    w.allocation.as_ref().map_or_else(
                        || "-".to_owned(),
                        |a| {
                            format!(
                                "{}/{} to {} ({})",
                                a.used_gpu_hours, a.granted_gpu_hours, a.end, a.state
                            )
                        },
                    ),
                    w.ready.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            "Workspaces",
            &[
                "WORKSPACE",
                "TENANT",
                "NAMESPACE",
                "GPUS USED",
                "STORAGE USED",
                "GPU-HOURS USED",
                "READY",
            ],
            &workspaces,
        );
        let environments: Vec<Vec<String>> = f
            .workspaces
            .iter()
            .flat_map(|w| {
                w.environments.iter().map(|e| {
                    vec![
                        e.name.clone(),
                        w.name.clone(),
                        e.image.clone(),
                        e.pool.clone(),
                        e.gpus.to_string(),
                        e.phase.clone(),
                        e.url.clone().unwrap_or_else(|| "-".to_owned()),
                    ]
                })
            })
            .collect();
        table(
            &mut out,
            "Jupyter environments",
            &[
                "ENVIRONMENT",
                "WORKSPACE",
                "IMAGE",
                "POOL",
                "GPUS",
                "PHASE",
                "URL",
            ],
            &environments,
        );
        if !f.maintenances.is_empty() {
            let maintenances: Vec<Vec<String>> = f
                .maintenances
                .iter()
                .map(|m| {
                    vec![
                        m.name.clone(),
                        m.action.clone(),
                        m.phase.clone(),
                        match m.current_wave {
                            Some(wave) => format!("{}/{}", wave + 1, m.waves),
                            None => "-".to_owned(),
                        },
                        format!("{}/{}", m.nodes_done, m.nodes_total),
                        m.nodes_failed.to_string(),
                        m.message.clone(),
                    ]
                })
                .collect();
            table(
                &mut out,
                "Maintenance",
                &[
                    "MAINTENANCE",
                    "ACTION",
                    "PHASE",
                    "WAVE",
                    "NODES DONE",
                    "FAILED",
                    "STATUS",
                ],
                &maintenances,
            );
        }
    }
    out
}

/// Everything `status` reads of a cluster.
type Fetched = (
    Vec<Factory>,
    Vec<Workspace>,
    Vec<JupyterEnvironment>,
    Vec<Maintenance>,
);

async fn fetch(only: Option<&str>) -> anyhow::Result<Fetched> {
    let client = Client::try_default()
        .await
        .context("no cluster: set KUBECONFIG or a current kubeconfig context")?;
    let params = ListParams::default();
    let factories = Api::<Factory>::all(client.clone())
        .list(&params)
        .await
        .context("listing Factories (are the fabbrica CRDs installed? `fabbrica crds | kubectl apply --server-side -f -`)")?
        .items;
    if let Some(name) = only
        && !factories.iter().any(|f| f.name_any() == name)
    {
        let names: Vec<String> = factories.iter().map(ResourceExt::name_any).collect();
        let valid = if names.is_empty() {
            "the cluster has none".to_owned()
        } else {
            format!("valid: {}", names.join(", "))
        };
        anyhow::bail!("no Factory named {name:?} (--factory); {valid}");
    }
    let workspaces = Api::<Workspace>::all(client.clone())
        .list(&params)
        .await
        .context("listing Workspaces")?
        .items;
    let environments = Api::<JupyterEnvironment>::all(client.clone())
        .list(&params)
        .await
        .context("listing JupyterEnvironments")?
        .items;
    // A cluster with the CRDs of an older release serves no Maintenances: none are under way.
    let maintenances = match Api::<Maintenance>::all(client).list(&params).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(err) => return Err(err).context("listing Maintenances"),
    };
    Ok((factories, workspaces, environments, maintenances))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let only = args.factory.as_deref();
    let (factories, workspaces, environments, maintenances) = runtime.block_on(fetch(only))?;
    let mut report = report(&factories, &workspaces, &environments, only);
    add_maintenances(&mut report, &maintenances);
    emit(args.output, &report, text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = r#"
factories:
  - apiVersion: fabbrica.io/v1alpha1
    kind: Factory
    metadata: {name: it4lia}
    spec:
      site: {name: it4lia, country: IT, tier: aiFactory}
      gpuPools:
        - name: training
          nodeSelector: {role: training}
          system: dgx-h100
          expectedNodes: 4
        - name: interactive
          nodeSelector: {role: interactive}
          system: dgx-h100
          expectedNodes: 2
          sharing: {mig: {profile: 1g.10gb}}
      fabric: {type: infiniband, railsPerNode: 8, linkSpeed: 400G, topology: {source: nodeOrder}}
      storageTiers:
        - {name: project, role: project, provisioner: lustre.csi.hpe.com, capacity: 2Pi}
    status:
      conditions:
        - {type: Ready, status: "False", reason: NodesNotReady, message: "", lastTransitionTime: "2025-01-01T00:00:00Z"}
      gpusReady: 16
      gpusExpected: 48
      pools:
        - {name: training, nodesMatched: 2, nodesReady: 2, nodesExpected: 4, gpusAllocatable: 16}
        - {name: interactive, nodesMatched: 1, nodesReady: 0, nodesExpected: 2, gpusAllocatable: 0}
  - apiVersion: fabbrica.io/v1alpha1
    kind: Factory
    metadata: {name: other}
    spec:
      site: {name: other, country: DE, tier: aiFactory}
      gpuPools:
        - {name: p, nodeSelector: {a: b}, system: dgx-b200, expectedNodes: 1}
      fabric: {type: roce, railsPerNode: 8, linkSpeed: 400G, topology: {source: nodeOrder}}
workspaces:
  - apiVersion: fabbrica.io/v1alpha1
    kind: Workspace
    metadata: {name: aurora}
    spec:
      factory: it4lia
      tenant: {name: Aurora Robotics, kind: startup}
      namespace: ws-aurora
      gpuQuota: [{pool: interactive, gpus: 4}, {pool: training, gpus: 8}]
      storageQuota: [{tier: project, capacity: 50Ti}]
      allocation: {mode: fast-lane, gpuHours: 20000, start: "2025-01-01", end: "2025-03-31"}
    status:
      conditions:
        - {type: Ready, status: "True", reason: AllReady, message: "", lastTransitionTime: "2025-01-01T00:00:00Z"}
      gpusUsed: 1
      gpusGranted: 12
      allocation: {state: Open, usedGpuHours: 1250.5, usedGpuSeconds: 4501800, runningGpus: 1}
      quota:
        - {resource: requests.nvidia.com/gpu, used: "1", granted: "12"}
        - {resource: it4lia-project.storageclass.storage.k8s.io/requests.storage, used: 100Gi, granted: 50Ti}
environments:
  - apiVersion: fabbrica.io/v1alpha1
    kind: JupyterEnvironment
    metadata: {name: giulia, namespace: ws-aurora}
    spec:
      image: pytorch
      profile: {pool: interactive, gpus: 1, cpu: "4", memory: 32Gi}
      home: {tier: project, size: 100Gi}
    status:
      phase: Running
      url: http://giulia.ws-aurora.svc:8888
  - apiVersion: fabbrica.io/v1alpha1
    kind: JupyterEnvironment
    metadata: {name: elsewhere, namespace: not-a-workspace}
    spec:
      image: pytorch
      profile: {pool: interactive, gpus: 1, cpu: "4", memory: 32Gi}
      home: {tier: project, size: 100Gi}
"#;

    #[derive(serde::Deserialize)]
    struct Cluster {
        factories: Vec<Factory>,
        workspaces: Vec<Workspace>,
        environments: Vec<JupyterEnvironment>,
    }

    fn cluster_report(only: Option<&str>) -> Report {
        let cluster: Cluster = serde_saphyr::from_str(CLUSTER).expect("fixture parses");
        report(
            &cluster.factories,
            &cluster.workspaces,
            &cluster.environments,
            only,
        )
    }

    #[test]
    fn report_counts_physical_gpus_and_groups_environments_by_workspace() {
        let report = cluster_report(Some("it4lia"));
        assert_eq!(report.factories.len(), 1);
        let f = &report.factories[0];
        assert_eq!(
            (f.gpus_ready, f.gpus_expected, f.ready.as_str()),
            (16, 48, "False")
        );
        assert_eq!((f.pools[0].gpus_ready, f.pools[0].gpus_expected), (16, 32));
        assert_eq!(f.tiers[0].storage_class, "it4lia-project");
        let ws = &f.workspaces[0];
        assert_eq!((ws.gpus_used, ws.gpus_granted), (1, 12));
        let names: Vec<_> = ws.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["giulia"],
            "environments outside the workspace's namespace are not its own"
        );
        assert_eq!(cluster_report(None).factories.len(), 2);
    }

    const MAINTENANCES: &str = r#"
- apiVersion: fabbrica.io/v1alpha1
  kind: Maintenance
  metadata: {name: driver-550}
  spec: {factory: it4lia, pools: [training], action: {type: agentSignal}}
  status:
    phase: Running
    message: "Node n03: eviction of Pod ws-aurora/giulia-0 refused: Cannot evict pod as it would violate the pod's disruption budget."
    currentWave: 1
    nodesTotal: 4
    nodesDone: 2
    nodesFailed: 0
    waves:
      - {index: 0, domains: [su01-lg0], phase: Complete, nodes: 2}
      - {index: 1, domains: [su01-lg1], phase: Running, nodes: 2}
- apiVersion: fabbrica.io/v1alpha1
  kind: Maintenance
  metadata: {name: done-last-week}
  spec: {factory: it4lia, action: {type: reboot}}
  status: {phase: Succeeded, nodesTotal: 6, nodesDone: 6}
- apiVersion: fabbrica.io/v1alpha1
  kind: Maintenance
  metadata: {name: elsewhere}
  spec: {factory: other, action: {type: drain}}
"#;

    #[test]
    fn maintenance_under_way_is_shown_with_its_factory_and_finished_ones_are_not() {
        let maintenances: Vec<Maintenance> =
            serde_saphyr::from_str(MAINTENANCES).expect("fixture parses");
        let mut report = cluster_report(None);
        add_maintenances(&mut report, &maintenances);
        let names = |i: usize| -> Vec<String> {
            report.factories[i]
                .maintenances
                .iter()
                .map(|m| m.name.clone())
                .collect()
        };
        assert_eq!(names(0), ["driver-550"]);
        assert_eq!(names(1), ["elsewhere"]);
        let shown = &report.factories[0].maintenances[0];
        assert_eq!(
            (shown.nodes_done, shown.nodes_total, shown.waves),
            (2, 4, 2)
        );
        assert_eq!(report.factories[1].maintenances[0].phase, "Unknown");
        let text = text(&report);
        assert!(
            text.contains("driver-550")
                && text.contains("2/2")
                && text.contains("disruption budget"),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn text_snapshot() {
        insta::assert_snapshot!(text(&cluster_report(Some("it4lia"))));
    }

    #[test]
    fn json_snapshot() {
        insta::assert_snapshot!(
            serde_json::to_string_pretty(&cluster_report(Some("it4lia"))).unwrap()
        );
    }
}
