//! `fabbrica plan`: the sizing of a site at a glance, from a blueprint file or
//! from a few flags. `-o json` is a stable interface for pipelines.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use fabbrica_crds::v1alpha1::SiteTier;
use fabbrica_site::{Plan, SiteBlueprint, grouped};

use crate::blueprint_file::{load, plan_or_report};
use crate::output::{Output, emit, table};
use crate::site_args::SiteFlags;

/// Size a site: nodes, scalable units, racks, fabrics, storage and power.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Site blueprint (YAML, kind SiteBlueprint); without it, the flags describe the site.
    #[arg(value_name = "SPEC", conflicts_with = "gpus")]
    pub spec: Option<PathBuf>,
    #[command(flatten)]
    pub site: SiteFlags,
    /// Nodes per scalable unit; by default half the leaf switch's ports (32 on NDR, 72 on XDR).
    #[arg(long, value_name = "N")]
    pub nodes_per_su: Option<u32>,
    /// Output format: text for people, json or yaml for pipelines.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

impl Args {
    /// The blueprint the flags describe with `gpus`.
    fn blueprint(&self, gpus: u32) -> SiteBlueprint {
        let mut blueprint = self.site.blueprint(gpus);
        blueprint.spec.compute.nodes_per_scalable_unit = self.nodes_per_su;
        blueprint
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (blueprint, source) = match (&args.spec, args.site.gpus) {
        (Some(path), _) => (load(path)?, path.display().to_string()),
        (None, Some(gpus)) => (args.blueprint(gpus), "command line".to_owned()),
        (None, None) => anyhow::bail!(
            "give a blueprint file, or --gpus N (with --system, --fabric, --nodes-per-su)"
        ),
    };
    let Some((_, plan)) = plan_or_report(&blueprint, &source) else {
        return Ok(ExitCode::from(1));
    };
    emit(args.output, &plan, text)?;
    Ok(ExitCode::SUCCESS)
}

fn n(x: impl Into<u64>) -> String {
    grouped(x.into())
}

/// The sizing tables a person reads (also in the rendered README).
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let f = &plan.compute_fabric;
    let _ = writeln!(
        out,
        "Site {} ({}): {} GPUs on {} {} nodes\n",
        plan.site,
        match plan.tier {
            SiteTier::AiFactory => "AI Factory",
            SiteTier::Gigafactory => "Gigafactory",
        },
        n(plan.gpus),
        n(plan.nodes),
        plan.system
    );
    let r = &plan.rack_layout;
    table(
        &mut out,
        "Sizing",
        &["ITEM", "COUNT", "DETAIL"],
        &[
            vec![
                "GPUs".into(),
                n(plan.gpus),
                format!(
                    "{} requested, {} per node",
                    n(plan.requested_gpus),
                    plan.gpus_per_node
                ),
            ],
            vec!["Nodes".into(), n(plan.nodes), plan.system.clone()],
            vec![
                "Scalable units".into(),
                n(plan.scalable_units),
                format!(
                    "{} nodes each, the last {}",
                    plan.nodes_per_scalable_unit, plan.nodes_in_last_unit
                ),
            ],
            vec![
                "Racks".into(),
                n(plan.racks),
                format!(
                    "{} compute, {} leaf, {} spine/core, {} management",
                    r.compute, r.leaf, r.spine, r.management
                ),
            ],
        ],
    );
    table(
        &mut out,
        &format!(
            "Compute fabric: {} {} ({} ports, {} Gb/s), {} tiers, {} rails, {}",
            f.generation.as_str().to_uppercase(),
            f.switch,
            f.radix,
            f.port_gbps,
            f.tiers,
            f.rails,
            if f.blocking_factor == 1 {
                "non-blocking".to_owned()
            } else {
                format!("{}:1 blocking", f.blocking_factor)
            }
        ),
        &["LEVEL", "SWITCHES", "CABLES UP", "PER SWITCH"],
        &[
            vec![
                "node".into(),
                "-".into(),
                n(f.node_leaf_cables),
                format!("{} rails per node", f.rails),
            ],
            vec![
                "leaf".into(),
                n(f.leaf_switches),
                n(f.leaf_spine_cables),
                format!("{} down, {} up", f.leaf_downlinks, f.leaf_uplinks),
            ],
            vec![
                "spine".into(),
                n(f.spine_switches),
                n(f.spine_core_cables),
                format!("{} group(s)", f.spine_groups),
            ],
            vec!["core".into(), n(f.core_switches), "-".into(), String::new()],
        ],
    );
    let _ = writeln!(
        out,
        "  Transceivers: {} in switches, {} in nodes\n",
        n(f.switch_transceivers),
        n(f.node_transceivers)
    );
    let s = &plan.storage_fabric;
    let ib = &plan.management_fabric.in_band;
    let oob = &plan.management_fabric.out_of_band;
    table(
        &mut out,
        "Storage and management fabrics",
        &[
            "FABRIC", "SWITCH", "PORTS", "LEAF", "SPINE", "CORE", "CABLES",
        ],
        &[
            vec![
                "storage".into(),
                s.switch.clone(),
                n(s.ports),
                n(s.leaf_switches),
                n(s.spine_switches),
                n(s.core_switches),
                n(s.cables),
            ],
            vec![
                "in-band".into(),
                ib.switch.clone(),
                n(ib.ports),
                n(ib.leaf_switches),
                n(ib.spine_switches),
                n(ib.core_switches),
                n(ib.cables),
            ],
            vec![
                "out-of-band".into(),
                oob.switch.clone(),
                n(oob.ports),
                n(oob.switches),
                "0".into(),
                "0".into(),
                n(oob.ports),
            ],
        ],
    );
    let tib = 1024f64.powi(4);
    let rows: Vec<Vec<String>> = plan
        .storage
        .tiers
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                format!("{:?}", t.role).to_lowercase(),
                t.capacity.clone(),
                format!("{:.2}", t.tib_per_gpu),
                format!("{:.0} TiB", t.granted_bytes as f64 / tib),
            ]
        })
        .collect();
    table(
        &mut out,
        "Storage",
        &["TIER", "ROLE", "CAPACITY", "TIB/GPU", "GRANTED"],
        &rows,
    );
    let p = &plan.power;
    table(
        &mut out,
        "Power",
        &["ITEM", "KW"],
        &[
            vec!["GPU nodes".into(), format!("{:.1}", p.compute_kw)],
            vec!["Network".into(), format!("{:.1}", p.network_kw)],
            vec!["IT".into(), format!("{:.1}", p.it_kw)],
            vec![
                format!("Facility (PUE {})", p.pue),
                format!("{:.1}", p.facility_kw),
            ],
        ],
    );
    let _ = writeln!(out, "Assumptions");
    for a in &plan.assumptions {
        let _ = writeln!(out, "  - {a}");
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use fabbrica_site as site;

    use super::*;

    fn flags(line: &str) -> Plan {
        let cli = crate::Cli::parse_from(line.split_whitespace());
        let crate::Command::Plan(args) = cli.command else {
            panic!("not plan")
        };
        site::plan(&site::validate(&args.blueprint(args.site.gpus.unwrap())).unwrap())
    }

    /// The plan as `-o json` prints it, without the final newline.
    fn json(plan: &Plan) -> String {
        let printed = crate::output::formatted(Output::Json, plan, text).unwrap();
        printed.trim_end_matches('\n').to_owned()
    }

    /// The keys pipelines read; renaming one breaks them.
    #[test]
    fn json_carries_the_stable_keys() {
        let value: serde_json::Value =
            serde_json::from_str(&json(&flags("fabbrica plan --gpus 1016"))).unwrap();
        for pointer in [
            "/nodes",
            "/gpus",
            "/scalableUnits",
            "/racks",
            "/computeFabric/tiers",
            "/computeFabric/leafSwitches",
            "/computeFabric/spineSwitches",
            "/computeFabric/coreSwitches",
            "/computeFabric/nodeLeafCables",
            "/computeFabric/leafSpineCables",
            "/computeFabric/spineCoreCables",
            "/computeFabric/switchTransceivers",
            "/computeFabric/nodeTransceivers",
            "/power/itKw",
            "/power/facilityKw",
            "/storageFabric/leafSwitches",
            "/managementFabric/inBand/leafSwitches",
            "/storage/tiers/0/bytes",
        ] {
            assert!(value.pointer(pointer).is_some(), "{pointer} missing");
        }
        assert!(value["assumptions"].as_array().is_some_and(|a| {
            a.iter()
                .all(|s| s.as_str().is_some_and(|s| s.ends_with('.')))
        }));
        assert_eq!(value["nodes"], 127);
        assert_eq!(value["computeFabric"]["spineSwitches"], 16);
    }

    #[test]
    fn json_snapshot_dgx_h100_4_units() {
        insta::assert_snapshot!(json(&flags(
            "fabbrica plan --gpus 1016 --system dgx-h100 -o json"
        )));
    }

    #[test]
    fn text_snapshot_dgx_h100_4_units() {
        insta::assert_snapshot!(text(&flags("fabbrica plan --gpus 1016 --system dgx-h100")));
    }

    #[test]
    fn text_snapshot_three_tiers_on_xdr() {
        insta::assert_snapshot!(text(&flags(
            "fabbrica plan --gpus 100000 --system gb200-nvl72 --fabric xdr --tier gigafactory --site giga"
        )));
    }

    #[test]
    fn nodes_per_su_flag_changes_the_units() {
        let plan = flags("fabbrica plan --gpus 1024 --nodes-per-su 16");
        assert_eq!(
            (plan.scalable_units, plan.compute_fabric.leaf_switches),
            (8, 64)
        );
    }
}
