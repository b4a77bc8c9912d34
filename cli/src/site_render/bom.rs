//! The bill of materials: every item the plan counts, as CSV rows.

use fabbrica_crds::catalog;
use fabbrica_crds::v1alpha1::GpuSystem;
use fabbrica_site::{Plan, switch};
use serde::Serialize;

/// One line of `bom.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// compute, network, cabling or facility.
    pub category: &'static str,
    /// What the item is for.
    pub item: String,
    /// Model or specification.
    pub model: String,
    /// How many.
    pub quantity: u64,
}

fn model(id: &str) -> String {
    switch(id).map_or_else(|| id.to_owned(), |s| s.name.clone())
}

/// The lines of the bill of materials, in a fixed order; items of quantity 0 are left out.
pub fn lines(plan: &Plan) -> Vec<Line> {
    let system = GpuSystem::from_id(&plan.system).map(catalog::system);
    let system_name = system.map_or_else(|| plan.system.clone(), |s| s.name.clone());
    let f = &plan.compute_fabric;
    let s = &plan.storage_fabric;
    let ib = &plan.management_fabric.in_band;
    let oob = &plan.management_fabric.out_of_band;
    let line = |category, item: &str, model: String, quantity: u64| Line {
        category,
        item: item.to_owned(),
        model,
        quantity,
    };
    let fabric = format!(
        "{} {} Gb/s",
        f.generation.as_str().to_uppercase(),
        f.port_gbps
    );
    let all = vec![
        line("compute", "GPU nodes", system_name, plan.nodes.into()),
        line(
            "compute",
            "GPUs (in the nodes)",
            system.map_or_else(String::new, |s| s.gpu.clone()),
            plan.gpus,
        ),
        line(
            "network",
            "compute leaf switches",
            model(&f.switch),
            f.leaf_switches.into(),
        ),
        line(
            "network",
            "compute spine switches",
            model(&f.switch),
            f.spine_switches.into(),
        ),
        line(
            "network",
            "compute core switches",
            model(&f.switch),
            f.core_switches.into(),
        ),
        line(
            "network",
            "storage fabric switches",
            model(&s.switch),
            (s.leaf_switches + s.spine_switches + s.core_switches).into(),
        ),
        line(
            "network",
            "in-band management switches",
            model(&ib.switch),
            (ib.leaf_switches + ib.spine_switches + ib.core_switches).into(),
        ),
        line(
            "network",
            "out-of-band management switches",
            model(&oob.switch),
            oob.switches.into(),
        ),
        line(
            "cabling",
            "compute node-leaf cables",
            format!("{fabric} optical"),
            f.node_leaf_cables,
        ),
        line(
            "cabling",
            "compute leaf-spine cables",
            format!("{fabric} optical"),
            f.leaf_spine_cables,
        ),
        line(
            "cabling",
            "compute spine-core cables",
            format!("{fabric} optical"),
            f.spine_core_cables,
        ),
        line(
            "cabling",
            "compute switch transceivers",
            format!("{fabric} twin-port OSFP"),
            f.switch_transceivers,
        ),
        line(
            "cabling",
            "compute node transceivers",
            format!("{fabric} OSFP"),
            f.node_transceivers,
        ),
        line(
            "cabling",
            "storage fabric cables",
            "NDR 400 Gb/s".to_owned(),
            s.cables,
        ),
        line(
            "cabling",
            "storage fabric switch transceivers",
            "NDR twin-port OSFP".to_owned(),
            s.switch_transceivers,
        ),
        line(
            "cabling",
            "in-band management cables",
            "100GbE".to_owned(),
            ib.cables,
        ),
        line(
            "cabling",
            "out-of-band management cables",
            "Cat6 1GbE".to_owned(),
            oob.ports.into(),
        ),
        line(
            "facility",
            "compute racks",
            format!("{} nodes per rack", plan.rack_layout.nodes_per_rack),
            plan.rack_layout.compute.into(),
        ),
        line(
            "facility",
            "leaf switch racks",
            "one per scalable unit".to_owned(),
            plan.rack_layout.leaf.into(),
        ),
        line(
            "facility",
            "spine and core switch racks",
            "42U".to_owned(),
            plan.rack_layout.spine.into(),
        ),
        line(
            "facility",
            "management racks",
            "servers, UFM, storage and OOB switches".to_owned(),
            plan.rack_layout.management.into(),
        ),
    ];
    all.into_iter().filter(|l| l.quantity > 0).collect()
}

/// `bom.csv`.
pub fn csv(plan: &Plan) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for line in lines(plan) {
        writer.serialize(line)?;
    }
    Ok(writer.into_inner()?)
}
