//! Sizing a site: nodes, scalable units, racks, the three fabrics, storage and
//! power, with the assumptions behind every figure written out as sentences.
//!
//! The compute fabric follows the NVIDIA DGX SuperPOD reference architectures:
//! - DGX H100 RA (RA-11333-001), table 4 "Compute fabric component count": 1, 2, 3 and 4
//!   SUs of 32 nodes on QM9700 switches need 8/4, 16/8, 24/16 and 32/16 leaves/spines
//!   and 256, 512, 768 and 1024 spine-leaf cables. Its node counts (31, 63, 95, 127) are
//!   one short of whole units because one position is given up for the UFM appliance.
//!   Table 7 lists 38 racks for the 4-SU, 127-node system.
//! - DGX B200 RA, "Larger DGX SuperPOD component counts": 2, 4 and 8 SUs in two tiers
//!   (16/8, 32/16 and 64/32 leaves/spines); 16, 32 and 64 SUs in three tiers with
//!   128/128/64, 256/256/128 and 512/512/256 leaves/spines/cores and 4096, 8192 and
//!   16384 cables at each level.
//! - DGX B300 XDR RA, table 3: SUs of 72 nodes on 144-port switches, 1, 2, 4, 8 and 18 SUs
//!   with 8/4, 16/8, 32/18, 64/36 and 144/72 leaves/spines.

use fabbrica_crds::catalog::SystemSpec;
use fabbrica_crds::quantity;
use fabbrica_crds::v1alpha1::{SiteTier, StorageRole};
use serde::Serialize;

use crate::fat_tree::FatTree;
use crate::spec::FabricGeneration;
use crate::switches::{self, SwitchSpec};
use crate::validate::ValidBlueprint;

/// Storage servers' ports on the storage fabric: one for every this many node ports.
const NODE_PORTS_PER_STORAGE_PORT: u32 = 4;
/// Switch rack units usable in a network rack, leaving room for patch panels and cable management.
const NETWORK_RACK_UNITS: u32 = 32;
/// Scalable units served by one management rack (servers, UFM, storage and OOB switches).
const UNITS_PER_MANAGEMENT_RACK: u32 = 16;
/// Power distribution units per compute rack, each on the out-of-band network.
const PDUS_PER_RACK: u32 = 2;
const STORAGE_SWITCH: &str = "qm9700";
const IN_BAND_SWITCH: &str = "sn4600c";
const OUT_OF_BAND_SWITCH: &str = "sn2201";

/// The sizing of a site: the stable machine interface of `fabbrica plan -o json`
/// and the header of `topology.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Site name.
    pub site: String,
    /// `aiFactory` or `gigafactory`.
    pub tier: SiteTier,
    /// GPU system model (`dgx-h100`).
    pub system: String,
    /// GPUs asked for.
    pub requested_gpus: u32,
    /// GPUs built: whole nodes.
    pub gpus: u64,
    /// GPUs per node.
    pub gpus_per_node: u32,
    /// Nodes (DGX systems or NVL72 compute trays).
    pub nodes: u32,
    /// Nodes per scalable unit.
    pub nodes_per_scalable_unit: u32,
    /// Scalable units, the last possibly partial.
    pub scalable_units: u32,
    /// Nodes in the last unit (equal to `nodesPerScalableUnit` when it is full).
    pub nodes_in_last_unit: u32,
    /// Racks in all.
    pub racks: u32,
    /// Racks by purpose.
    pub rack_layout: RackLayout,
    /// The compute fabric.
    pub compute_fabric: ComputeFabricPlan,
    /// The storage fabric.
    pub storage_fabric: TreeFabricPlan,
    /// The management networks.
    pub management_fabric: ManagementFabricPlan,
    /// Storage by tier.
    pub storage: StoragePlan,
    /// Power.
    pub power: PowerPlan,
    /// What the sizing assumes, and how it rounded, as sentences.
    pub assumptions: Vec<String>,
}

/// Racks by purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RackLayout {
    /// Racks of GPU nodes.
    pub compute: u32,
    /// Racks of leaf switches, one per scalable unit.
    pub leaf: u32,
    /// Racks of spine and core switches.
    pub spine: u32,
    /// Racks of management servers, storage and management switches.
    pub management: u32,
    /// Nodes per compute rack.
    pub nodes_per_rack: u32,
}

/// The compute fabric: a rail-optimized fat tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputeFabricPlan {
    /// `ndr` or `xdr`.
    pub generation: FabricGeneration,
    /// Switch model (`qm9700`).
    pub switch: String,
    /// Ports per switch.
    pub radix: u32,
    /// Gigabits per second per port.
    pub port_gbps: u32,
    /// Rails per node.
    pub rails: u32,
    /// Leaf downlinks per uplink (1 is non-blocking).
    pub blocking_factor: u32,
    /// 1, 2 or 3.
    pub tiers: u32,
    /// Leaf switches.
    pub leaf_switches: u32,
    /// Spine switches.
    pub spine_switches: u32,
    /// Core switches (three tiers only).
    pub core_switches: u32,
    /// Spine groups (three tiers), 1 otherwise.
    pub spine_groups: u32,
    /// Downlinks (node ports) per leaf.
    pub leaf_downlinks: u32,
    /// Uplinks per leaf.
    pub leaf_uplinks: u32,
    /// Cables from node ports to leaves.
    pub node_leaf_cables: u64,
    /// Cables from leaves to spines.
    pub leaf_spine_cables: u64,
    /// Cables from spines to cores.
    pub spine_core_cables: u64,
    /// Transceivers in switch cages.
    pub switch_transceivers: u64,
    /// Transceivers in node cages.
    pub node_transceivers: u64,
    /// The tree itself, for cabling and diagrams.
    #[serde(skip)]
    pub tree: FatTree,
}

/// A fabric sized as a non-blocking fat tree of one switch model.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeFabricPlan {
    /// Switch model.
    pub switch: String,
    /// End ports: nodes and servers.
    pub ports: u32,
    /// 1, 2 or 3.
    pub tiers: u32,
    /// Leaf switches.
    pub leaf_switches: u32,
    /// Spine switches.
    pub spine_switches: u32,
    /// Core switches.
    pub core_switches: u32,
    /// Cables: end ports plus switch-to-switch links.
    pub cables: u64,
    /// Transceivers in switch cages.
    pub switch_transceivers: u64,
}

/// In-band and out-of-band management.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagementFabricPlan {
    /// In-band Ethernet: one port per node.
    pub in_band: TreeFabricPlan,
    /// Out-of-band Ethernet: node BMCs, switch management ports, PDUs.
    pub out_of_band: OutOfBandPlan,
}

/// The out-of-band network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutOfBandPlan {
    /// Switch model.
    pub switch: String,
    /// Ports: node BMCs, every other switch's management port, PDUs.
    pub ports: u32,
    /// Switches.
    pub switches: u32,
}

/// Storage by tier.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoragePlan {
    /// Usable bytes over all tiers.
    pub total_bytes: u64,
    /// One entry per tier, in spec order.
    pub tiers: Vec<StorageTierPlan>,
}

/// One storage tier.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageTierPlan {
    /// Tier name.
    pub name: String,
    /// Tier role.
    pub role: StorageRole,
    /// Capacity as declared (`2Pi`).
    pub capacity: String,
    /// Usable bytes.
    pub bytes: u64,
    /// TiB per GPU, to two decimals.
    pub tib_per_gpu: f64,
    /// Bytes granted to tenants.
    pub granted_bytes: u64,
}

/// Power.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PowerPlan {
    /// GPU nodes at their maximum, kW.
    pub compute_kw: f64,
    /// Every switch at its maximum, kW.
    pub network_kw: f64,
    /// IT power: compute plus network, kW.
    pub it_kw: f64,
    /// Power usage effectiveness.
    pub pue: f64,
    /// Facility power: IT power times PUE, kW.
    pub facility_kw: f64,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Thousands separated by commas, as the report prints counts.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether the storage and in-band fabrics of `nodes` nodes fit three tiers of their
/// switches; if not, which one does not and how many nodes it carries at most.
pub(crate) fn support_fabrics_fit(system: &SystemSpec, nodes: u32) -> Result<(), String> {
    let storage_ports = u64::from(nodes) * u64::from(system.storage_ports);
    let storage_ports =
        storage_ports + storage_ports.div_ceil(u64::from(NODE_PORTS_PER_STORAGE_PORT));
    for (name, id, ports, per_node) in [
        (
            "storage",
            STORAGE_SWITCH,
            storage_ports,
            storage_ports.div_ceil(u64::from(nodes.max(1))),
        ),
        ("in-band", IN_BAND_SWITCH, u64::from(nodes), 1),
    ] {
        let switch = switches::known(id);
        let fits = u32::try_from(ports)
            .ok()
            .map(|ports| FatTree::size(ports, switch.ports / 2, 1, switch.ports, 1));
        let max_ports =
            u64::from(switch.ports) * u64::from(switch.ports / 2) * u64::from(switch.ports / 2);
        if !matches!(fits, Some(Ok(_))) {
            return Err(format!(
                "{nodes} nodes need {ports} {name} ports, more than three tiers of {}-port {} switches carry; valid: at most {} nodes",
                switch.ports,
                switch.id,
                max_ports / per_node.max(1)
            ));
        }
    }
    Ok(())
}

fn tree_fabric(switch: &SwitchSpec, ports: u32) -> TreeFabricPlan {
    let half = switch.ports / 2;
    let tree = FatTree::size(ports, half, 1, switch.ports, 1)
        .expect("management and storage fabrics are far below three tiers at any site size");
    TreeFabricPlan {
        switch: switch.id.clone(),
        ports,
        tiers: tree.tiers,
        leaf_switches: tree.leaves(),
        spine_switches: tree.spines(),
        core_switches: tree.cores(),
        cables: tree.node_leaf_cables() + tree.leaf_spine_cables() + tree.spine_core_cables(),
        switch_transceivers: tree.switch_transceivers(switch.ports_per_cage),
    }
}

fn switch_count(f: &TreeFabricPlan) -> u32 {
    f.leaf_switches + f.spine_switches + f.core_switches
}

/// Sizes a validated blueprint.
pub fn plan(site: &ValidBlueprint<'_>) -> Plan {
    let spec = site.spec();
    let system = site.system();
    let fabric = &spec.compute_fabric;
    let switch = site.switch();
    let tree = site.tree();
    let nodes_per_unit = tree.nodes_per_unit;
    let nodes = tree.nodes;
    let gpus = u64::from(nodes) * u64::from(system.gpus_per_node);
    let compute_fabric = ComputeFabricPlan {
        generation: fabric.generation,
        switch: switch.id.clone(),
        radix: switch.ports,
        port_gbps: switch.port_gbps,
        rails: system.compute_rails,
        blocking_factor: fabric.blocking_factor,
        tiers: tree.tiers,
        leaf_switches: tree.leaves(),
        spine_switches: tree.spines(),
        core_switches: tree.cores(),
        spine_groups: tree.spine_groups.max(1),
        leaf_downlinks: nodes_per_unit,
        leaf_uplinks: tree.leaf_uplinks,
        node_leaf_cables: tree.node_leaf_cables(),
        leaf_spine_cables: tree.leaf_spine_cables(),
        spine_core_cables: tree.spine_core_cables(),
        switch_transceivers: tree.switch_transceivers(switch.ports_per_cage),
        node_transceivers: u64::from(nodes)
            * u64::from(system.compute_rails.div_ceil(system.compute_ports_per_cage)),
        tree: tree.clone(),
    };

    let storage_switch = switches::known(STORAGE_SWITCH);
    let node_storage_ports = nodes * system.storage_ports;
    let storage_fabric = tree_fabric(
        storage_switch,
        node_storage_ports + node_storage_ports.div_ceil(NODE_PORTS_PER_STORAGE_PORT),
    );
    let in_band = tree_fabric(switches::known(IN_BAND_SWITCH), nodes);

    let compute_racks = nodes.div_ceil(system.nodes_per_rack);
    let spine_units =
        (compute_fabric.spine_switches + compute_fabric.core_switches) * switch.rack_units;
    let rack_layout = RackLayout {
        compute: compute_racks,
        leaf: tree.units,
        spine: spine_units.div_ceil(NETWORK_RACK_UNITS),
        management: tree.units.div_ceil(UNITS_PER_MANAGEMENT_RACK),
        nodes_per_rack: system.nodes_per_rack,
    };
    let racks = rack_layout.compute + rack_layout.leaf + rack_layout.spine + rack_layout.management;

    let compute_switches =
        compute_fabric.leaf_switches + compute_fabric.spine_switches + compute_fabric.core_switches;
    let oob_switch = switches::known(OUT_OF_BAND_SWITCH);
    let managed_switches =
        compute_switches + switch_count(&storage_fabric) + switch_count(&in_band);
    let mut oob_ports = nodes + managed_switches + PDUS_PER_RACK * compute_racks;
    let mut oob_switches = oob_ports.div_ceil(oob_switch.ports);
    // The out-of-band switches are managed over their own network too.
    oob_ports += oob_switches;
    oob_switches = oob_ports.div_ceil(oob_switch.ports);
    let out_of_band = OutOfBandPlan {
        switch: oob_switch.id.clone(),
        ports: oob_ports,
        switches: oob_switches,
    };

    let tib = 1024f64.powi(4);
    let mut tiers = Vec::new();
    for tier in &spec.storage.tiers {
        let bytes = quantity::value(&tier.capacity).unwrap_or_default();
        let granted: f64 = spec
            .tenants
            .iter()
            .flat_map(|t| &t.storage)
            .filter(|q| q.tier == tier.name)
            .filter_map(|q| quantity::value(&q.capacity))
            .sum();
        tiers.push(StorageTierPlan {
            name: tier.name.clone(),
            role: tier.role,
            capacity: tier.capacity.0.clone(),
            bytes: bytes as u64,
            tib_per_gpu: round2(bytes / tib / gpus as f64),
            granted_bytes: granted as u64,
        });
    }
    let storage = StoragePlan {
        total_bytes: tiers.iter().map(|t| t.bytes).sum(),
        tiers,
    };

    let compute_kw = f64::from(nodes) * system.node_power_kw;
    let network_kw = f64::from(compute_switches) * switch.power_kw
        + f64::from(switch_count(&storage_fabric)) * storage_switch.power_kw
        + f64::from(switch_count(&in_band)) * switches::known(IN_BAND_SWITCH).power_kw
        + f64::from(oob_switches) * oob_switch.power_kw;
    let it_kw = compute_kw + network_kw;
    let power = PowerPlan {
        compute_kw: round1(compute_kw),
        network_kw: round1(network_kw),
        it_kw: round1(it_kw),
        pue: spec.facility.pue,
        facility_kw: round1(it_kw * spec.facility.pue),
    };

    let mut plan = Plan {
        site: spec.site.name.clone(),
        tier: spec.site.tier,
        system: system.id.clone(),
        requested_gpus: spec.compute.gpus,
        gpus,
        gpus_per_node: system.gpus_per_node,
        nodes,
        nodes_per_scalable_unit: nodes_per_unit,
        scalable_units: tree.units,
        nodes_in_last_unit: tree.nodes_in_unit(tree.units - 1),
        racks,
        rack_layout,
        compute_fabric,
        storage_fabric,
        management_fabric: ManagementFabricPlan {
            in_band,
            out_of_band,
        },
        storage,
        power,
        assumptions: Vec::new(),
    };
    plan.assumptions = assumptions(&plan, system, switch, storage_switch);
    plan
}

fn assumptions(
    plan: &Plan,
    system: &SystemSpec,
    switch: &SwitchSpec,
    storage_switch: &SwitchSpec,
) -> Vec<String> {
    let f = &plan.compute_fabric;
    let tree = &f.tree;
    let g = |n: u64| grouped(n);
    let mut a = Vec::new();
    a.push(format!(
        "The compute fabric follows the NVIDIA DGX SuperPOD reference architectures: scalable units of {} nodes, one leaf switch per rail per unit, a rail-optimized fat tree of {} ({}-port, {} Gb/s) switches{}.",
        plan.nodes_per_scalable_unit,
        switch.name,
        switch.ports,
        switch.port_gbps,
        if f.blocking_factor == 1 { ", non-blocking".to_owned() } else { format!(", with {}:1 blocking at the leaves", f.blocking_factor) }
    ));
    if u64::from(plan.requested_gpus) == plan.gpus {
        a.push(format!(
            "{} GPUs are {} nodes of {} GPUs ({}).",
            g(plan.gpus),
            g(plan.nodes.into()),
            system.gpus_per_node,
            system.name
        ));
    } else {
        a.push(format!(
            "The target of {} GPUs is rounded up to {} whole nodes of {} GPUs ({}), {} GPUs.",
            g(plan.requested_gpus.into()),
            g(plan.nodes.into()),
            system.gpus_per_node,
            system.name,
            g(plan.gpus)
        ));
    }
    if plan.nodes_in_last_unit == plan.nodes_per_scalable_unit {
        a.push(format!(
            "The {} nodes fill {} scalable units exactly.",
            g(plan.nodes.into()),
            plan.scalable_units
        ));
    } else {
        a.push(format!(
            "The {} nodes fill {} whole scalable units and a partial one of {} nodes; its leaf switches and leaf-spine cables are built for all {} nodes, as the reference architectures recommend, leaving {} ports per leaf for growth.",
            g(plan.nodes.into()),
            plan.scalable_units - 1,
            plan.nodes_in_last_unit,
            plan.nodes_per_scalable_unit,
            plan.nodes_per_scalable_unit - plan.nodes_in_last_unit
        ));
    }
    a.push(format!(
        "Each node has {} compute rails ({} each), every rail cabled to its unit's leaf for that rail.",
        f.rails, system.compute_nic
    ));
    match tree.tiers {
        1 => a.push("A single leaf switch connects every node; no spines are needed.".to_owned()),
        2 => a.push(format!(
            "Two tiers suffice while the leaves fit the spines' {} ports; the {} spines are the smallest divisor of the {} leaf uplinks with ports for all of them, so every leaf has {} link(s) to every spine.",
            switch.ports, f.spine_switches, f.leaf_uplinks, tree.leaf_spine_links
        )),
        _ => a.push(format!(
            "Past what two tiers connect ({} leaves), a core tier is added: {} spine groups of up to {} leaves, each leaf linked once to each of its group's {} spines, and {} core planes of {} switches; spine uplinks are provisioned in full so groups fill without recabling.",
            switch.ports,
            tree.spine_groups,
            switch.ports / 2,
            tree.spines_per_group,
            tree.spines_per_group,
            tree.cores_per_plane
        )),
    }
    a.push(format!(
        "Every link is optical: one {}-port transceiver per switch cage and {} compute port(s) per node cage.",
        switch.ports_per_cage, system.compute_ports_per_cage
    ));
    a.push("Ports for the UFM appliances are not counted; the DGX H100 reference architecture gives up one node position for them (127 rather than 128 nodes in 4 units).".to_owned());
    if f.generation == FabricGeneration::Xdr {
        a.push(format!(
            "XDR assumes 800 Gb/s compute NICs (ConnectX-8 class) in place of the catalog's {}.",
            system.compute_nic
        ));
    }
    a.push(format!(
        "The storage fabric is a non-blocking fat tree of {} with {} port(s) per node and one storage-server port per {} node ports; in-band management is one 100GbE port per node on {}; out-of-band management is one 1GbE port per node, per switch and {} per compute rack (PDUs) on {}.",
        storage_switch.name,
        system.storage_ports,
        NODE_PORTS_PER_STORAGE_PORT,
        switches::known(IN_BAND_SWITCH).name,
        PDUS_PER_RACK,
        switches::known(OUT_OF_BAND_SWITCH).name
    ));
    a.push(format!(
        "Racks: {} nodes per compute rack, one leaf rack per scalable unit, spine and core switches in racks of {} usable units, one management rack per {} scalable units (the 4-unit, 127-node DGX H100 SuperPOD has 38 racks).",
        system.nodes_per_rack, NETWORK_RACK_UNITS, UNITS_PER_MANAGEMENT_RACK
    ));
    a.push(format!(
        "IT power counts every node at its {} kW maximum and every switch at its maximum; storage servers and management servers are not included. Facility power is IT power times a PUE of {}.",
        system.node_power_kw, plan.power.pue
    ));
    a.push("Storage capacities are usable capacities as declared; raw capacity depends on the file system's data protection.".to_owned());
    a
}
