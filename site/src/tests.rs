//! The sizing against the published DGX SuperPOD tables, the cabling against the
//! sizing, and the validation's field paths.

use std::collections::{BTreeMap, BTreeSet};

use fabbrica_crds::v1alpha1::{GpuSystem, SiteTier};
use fabbrica_crds::validation::{validate_factory, validate_jupyter, validate_workspace};

use super::*;
use crate::exports::topology_conf;

fn site(gpus: u32, system: GpuSystem, generation: FabricGeneration) -> SiteBlueprint {
    new_site(&NewSite {
        name: "test".into(),
        country: "IT".into(),
        tier: SiteTier::AiFactory,
        gpus,
        system,
        generation: Some(generation),
    })
}

fn sized(gpus: u32, system: GpuSystem, generation: FabricGeneration) -> Plan {
    let blueprint = site(gpus, system, generation);
    plan(&validate(&blueprint).unwrap_or_else(|e| panic!("{gpus} GPUs: {e}")))
}

/// (SUs, leaves, spines, cores, node-leaf, leaf-spine, spine-core cables) of one table row.
type Row = (u32, u32, u32, u32, u64, u64, u64);

fn check(plan: &Plan, row: Row) {
    let f = &plan.compute_fabric;
    let got = (
        plan.scalable_units,
        f.leaf_switches,
        f.spine_switches,
        f.core_switches,
        f.node_leaf_cables,
        f.leaf_spine_cables,
        f.spine_core_cables,
    );
    assert_eq!(got, row, "{} nodes", plan.nodes);
    assert_eq!(
        f.tiers,
        if row.3 == 0 { 2 } else { 3 },
        "{} nodes",
        plan.nodes
    );
}

/// DGX B200 SuperPOD RA, "Larger DGX SuperPOD component counts" (32 nodes per SU, QM9700).
#[test]
fn matches_the_dgx_b200_superpod_table_from_2_to_64_units() {
    let table: [Row; 6] = [
        (2, 16, 8, 0, 512, 512, 0),
        (4, 32, 16, 0, 1024, 1024, 0),
        (8, 64, 32, 0, 2048, 2048, 0),
        (16, 128, 128, 64, 4096, 4096, 4096),
        (32, 256, 256, 128, 8192, 8192, 8192),
        (64, 512, 512, 256, 16384, 16384, 16384),
    ];
    for row in table {
        let plan = sized(row.0 * 32 * 8, GpuSystem::DgxB200, FabricGeneration::Ndr);
        assert_eq!(plan.nodes, row.0 * 32);
        check(&plan, row);
    }
}

/// DGX H100 SuperPOD RA, table 4 "Compute fabric component count": 31, 63, 95 and 127 nodes
/// (one position per system given to UFM, whose 4 cables the table adds to the node cables).
#[test]
fn matches_the_dgx_h100_superpod_table_from_1_to_4_units() {
    let table: [(u32, Row); 4] = [
        (31, (1, 8, 4, 0, 248, 256, 0)),
        (63, (2, 16, 8, 0, 504, 512, 0)),
        (95, (3, 24, 16, 0, 760, 768, 0)),
        (127, (4, 32, 16, 0, 1016, 1024, 0)),
    ];
    for (nodes, row) in table {
        let plan = sized(nodes * 8, GpuSystem::DgxH100, FabricGeneration::Ndr);
        check(&plan, row);
        assert_eq!(plan.nodes_in_last_unit, 31);
    }
    // Table 7: the 4-SU, 127-node DGX SuperPOD takes 38 racks.
    assert_eq!(
        sized(1016, GpuSystem::DgxH100, FabricGeneration::Ndr).racks,
        38
    );
}

/// DGX B300 XDR SuperPOD RA, table 3 (72 nodes per SU on 144-port switches). Its 18-SU row
/// prints 9216 GPUs, but 1296 nodes of 8 GPUs and its 10368 cables say 10368.
#[test]
fn matches_the_dgx_b300_xdr_table() {
    let table: [Row; 5] = [
        (1, 8, 4, 0, 576, 576, 0),
        (2, 16, 8, 0, 1152, 1152, 0),
        (4, 32, 18, 0, 2304, 2304, 0),
        (8, 64, 36, 0, 4608, 4608, 0),
        (18, 144, 72, 0, 10368, 10368, 0),
    ];
    for row in table {
        let plan = sized(row.0 * 72 * 8, GpuSystem::DgxB200, FabricGeneration::Xdr);
        assert_eq!(plan.nodes_per_scalable_unit, 72);
        check(&plan, row);
    }
}

#[test]
fn a_partial_unit_is_built_for_the_full_unit_and_says_so() {
    let plan = sized(1000, GpuSystem::DgxH100, FabricGeneration::Ndr);
    assert_eq!(
        (
            plan.nodes,
            plan.gpus,
            plan.scalable_units,
            plan.nodes_in_last_unit
        ),
        (125, 1000, 4, 29)
    );
    check(&plan, (4, 32, 16, 0, 1000, 1024, 0));
    assert!(
        plan.assumptions
            .iter()
            .any(|a| a.contains("partial one of 29 nodes") && a.contains("3 ports per leaf"))
    );

    let plan = sized(1001, GpuSystem::DgxH100, FabricGeneration::Ndr);
    assert_eq!((plan.nodes, plan.gpus), (126, 1008));
    assert!(
        plan.assumptions
            .iter()
            .any(|a| a.contains("target of 1,001 GPUs is rounded up to 126 whole nodes"))
    );
}

#[test]
fn transceivers_pair_ports_on_twin_port_cages() {
    // One full H100 unit: 8 leaves with 16 cages down and 16 up, 4 spines with 64 ports each.
    let plan = sized(256, GpuSystem::DgxH100, FabricGeneration::Ndr);
    assert_eq!(plan.compute_fabric.switch_transceivers, 8 * 32 + 4 * 32);
    // Four twin-port cages carry a DGX's eight rails.
    assert_eq!(plan.compute_fabric.node_transceivers, 32 * 4);
    // A GB200 tray has one single-port cage per rail.
    let plan = sized(4 * 36, GpuSystem::Gb200Nvl72, FabricGeneration::Ndr);
    assert_eq!(plan.compute_fabric.node_transceivers, 36 * 4);
}

#[test]
fn power_adds_nodes_and_switches_then_applies_pue() {
    let plan = sized(256, GpuSystem::DgxH100, FabricGeneration::Ndr);
    assert_eq!(plan.power.compute_kw, 32.0 * 10.2);
    assert!(plan.power.network_kw > 12.0 * 1.72);
    assert!((plan.power.facility_kw - plan.power.it_kw * 1.3).abs() < 0.1);
}

/// Every port of every switch carries at most one cable, within the switch's ports,
/// and the cables per level add up to the plan's figures.
fn check_cabling(plan: &Plan) {
    let tree = &plan.compute_fabric.tree;
    let mut used = BTreeSet::new();
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for_each_cable(tree, |c| {
        assert!(c.to_port >= 1 && c.to_port <= tree.radix, "{c:?}");
        assert!(
            used.insert((c.to.clone(), c.to_port)),
            "port used twice: {c:?}"
        );
        if c.kind != CableKind::NodeLeaf {
            let port: u32 = c.from_port.parse().unwrap();
            assert!(
                used.insert((c.from.clone(), port)),
                "port used twice: {c:?}"
            );
        }
        *counts.entry(c.kind.as_str()).or_default() += 1;
        Ok::<_, ()>(())
    })
    .unwrap();
    let f = &plan.compute_fabric;
    assert_eq!(
        counts.get("node-leaf").copied().unwrap_or(0),
        f.node_leaf_cables
    );
    assert_eq!(
        counts.get("leaf-spine").copied().unwrap_or(0),
        f.leaf_spine_cables
    );
    assert_eq!(
        counts.get("spine-core").copied().unwrap_or(0),
        f.spine_core_cables
    );
}

#[test]
fn cabling_uses_every_port_once_in_two_and_three_tiers() {
    check_cabling(&sized(760, GpuSystem::DgxH100, FabricGeneration::Ndr));
    check_cabling(&sized(
        16 * 256 - 8,
        GpuSystem::DgxB200,
        FabricGeneration::Ndr,
    ));
    check_cabling(&sized(
        3 * 72 * 8,
        GpuSystem::DgxB200,
        FabricGeneration::Xdr,
    ));
}

#[test]
fn slurm_topology_groups_nodes_by_unit() {
    let plan = sized(1016, GpuSystem::DgxH100, FabricGeneration::Ndr);
    let conf = topology_conf("test", &plan.compute_fabric.tree);
    assert!(
        conf.contains("SwitchName=su01 Nodes=su01-n[01-32]\n"),
        "{conf}"
    );
    assert!(
        conf.contains("SwitchName=su04 Nodes=su04-n[01-31]\n"),
        "{conf}"
    );
    assert!(
        conf.contains("SwitchName=spines Switches=su[01-04]\n"),
        "{conf}"
    );
    let plan = sized(16 * 256, GpuSystem::DgxB200, FabricGeneration::Ndr);
    let conf = topology_conf("test", &plan.compute_fabric.tree);
    assert!(
        conf.contains("SwitchName=g04 Switches=su[13-16]\n"),
        "{conf}"
    );
    assert!(
        conf.contains("SwitchName=cores Switches=g[01-04]\n"),
        "{conf}"
    );
}

#[test]
fn too_many_gpus_for_three_ndr_tiers_point_to_xdr() {
    let err = validate(&site(100_000, GpuSystem::DgxB200, FabricGeneration::Ndr)).unwrap_err();
    let problem = err
        .0
        .iter()
        .find(|p| p.path == "spec.compute.gpus")
        .expect("a problem on spec.compute.gpus");
    assert!(
        problem.message.contains("at most 65536 GPUs") && problem.message.contains("xdr"),
        "{problem}"
    );
    let giga = sized(100_000, GpuSystem::Gb200Nvl72, FabricGeneration::Xdr);
    assert_eq!((giga.nodes, giga.compute_fabric.tiers), (25_000, 3));
    check_cabling(&giga);
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let mut bp = site(1024, GpuSystem::DgxH100, FabricGeneration::Ndr);
    bp.spec.site.country = "Italy".into();
    bp.spec.storage.tiers[1].capacity =
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into());
    bp.spec.tenants[0].gpus = 5000;
    bp.spec.tenants[1].storage[0].tier = "fast".into();
    bp.spec.facility.pue = 0.9;
    bp.spec.compute.nodes_per_scalable_unit = Some(40);
    let problems = validate(&bp).unwrap_err().0;
    let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
    for path in [
        "spec.site.country",
        "spec.storage.tiers[1].capacity",
        "spec.tenants",
        "spec.tenants[1].storage[0].tier",
        "spec.facility.pue",
        "spec.compute.nodesPerScalableUnit",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    let tier = problems
        .iter()
        .find(|p| p.path == "spec.tenants[1].storage[0].tier")
        .unwrap();
    assert!(
        tier.message
            .contains("valid: scratch, project, datasets, archive"),
        "{tier}"
    );
    let units = problems
        .iter()
        .find(|p| p.path == "spec.compute.nodesPerScalableUnit")
        .unwrap();
    assert!(units.message.contains("valid: 1 to 32"), "{units}");
}

#[test]
fn new_sites_render_objects_the_operator_accepts() {
    for (tier, gpus, system) in [
        (SiteTier::AiFactory, 8, GpuSystem::DgxH100),
        (SiteTier::AiFactory, 20_000, GpuSystem::DgxH200),
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
        let valid = validate(&bp).unwrap_or_else(|e| panic!("{gpus} GPUs: {e}"));
        let plan = plan(&valid);
        let objects = build(&valid, &plan);
        validate_factory(&objects.factory.spec).unwrap();
        let specs: Vec<_> = objects
            .workspaces
            .iter()
            .map(|w| (w.metadata.name.clone().unwrap(), &w.spec))
            .collect();
        for (name, ws) in &specs {
            let others: Vec<_> = specs
                .iter()
                .filter(|(n, _)| n != name)
                .map(|(n, s)| (n.as_str(), *s))
                .collect();
            validate_workspace(ws, Some(&objects.factory.spec), &others)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(objects.notebooks.len(), objects.workspaces.len());
        for nb in &objects.notebooks {
            let ns = nb.metadata.namespace.as_deref().unwrap();
            let ws = specs.iter().find(|(_, s)| s.namespace == ns).unwrap().1;
            validate_jupyter(&nb.spec, &objects.factory.spec, ws)
                .unwrap_or_else(|e| panic!("{ns}: {e}"));
        }
    }
}

#[test]
fn a_tenants_allocation_is_rendered_into_its_workspace_and_checked() {
    let mut bp = site(512, GpuSystem::DgxH100, FabricGeneration::Ndr);
    bp.spec.tenants[0].allocation = Some(
        serde_saphyr::from_str(
            "{mode: fast-lane, gpuHours: 40000, start: '2026-01-01', end: '2026-03-31'}",
        )
        .unwrap(),
    );
    let valid = validate(&bp).unwrap();
    let objects = build(&valid, &plan(&valid));
    let ws = &objects.workspaces[0];
    assert_eq!(ws.spec.allocation, bp.spec.tenants[0].allocation);
    validate_workspace(&ws.spec, Some(&objects.factory.spec), &[]).unwrap();
    // Beyond the mode's limits: the operator's rules refuse the rendered Workspace.
    let mut over = ws.spec.clone();
    over.allocation.as_mut().unwrap().gpu_hours = Some(60_000.0);
    let problems = validate_workspace(&over, Some(&objects.factory.spec), &[]).unwrap_err();
    assert_eq!(problems.0[0].path, "spec.allocation.gpuHours");
}
