//! The rules of a Factory on its own.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Problem, Problems, check_key, check_quantity, duplicates, listing};
use crate::catalog;
use crate::v1alpha1::{FactorySpec, GpuPool, TopologySource};

/// Validates a Factory spec on its own.
pub fn validate_factory(spec: &FactorySpec) -> Result<(), Problems> {
    let mut p = Vec::new();
    duplicates(
        spec.gpu_pools.iter().map(|x| x.name.as_str()),
        |i| format!("spec.gpuPools[{i}].name"),
        "pool name",
        &mut p,
    );
    duplicates(
        spec.storage_tiers.iter().map(|x| x.name.as_str()),
        |i| format!("spec.storageTiers[{i}].name"),
        "tier name",
        &mut p,
    );
    for (i, pool) in spec.gpu_pools.iter().enumerate() {
        validate_pool(i, pool, &mut p);
    }
    if let Some((i, pool, rails)) = spec
        .gpu_pools
        .iter()
        .enumerate()
        .map(|(i, pool)| (i, pool, catalog::system(pool.system).compute_rails))
        .find(|(_, _, rails)| spec.fabric.rails_per_node > *rails)
    {
        p.push(Problem::new(
            "spec.fabric.railsPerNode",
            format!(
                "{} rails per node, but pool {:?} (spec.gpuPools[{i}], {}) has only {rails} compute NICs per node; valid: 1 to {rails}",
                spec.fabric.rails_per_node, pool.name, pool.system
            ),
        ));
    }
    let topology = &spec.fabric.topology;
    if let Some(discovery) = &topology.discovery {
        super::health::validate_discovery(discovery, &mut p);
    }
    match topology.source {
        TopologySource::Declared if topology.scalable_units.is_empty() => p.push(Problem::new(
            "spec.fabric.topology.scalableUnits",
            "source is declared but no scalable units are listed; list them, or use source nodeOrder or nodeLabels",
        )),
        TopologySource::NodeLabels if topology.scalable_unit_label.as_deref().unwrap_or("").is_empty() => {
            p.push(Problem::new(
                "spec.fabric.topology.scalableUnitLabel",
                "source is nodeLabels but no label is named; set the Node label that holds the scalable unit",
            ))
        }
        _ => {}
    }
    duplicates(
        topology.scalable_units.iter().map(|u| u.name.as_str()),
        |i| format!("spec.fabric.topology.scalableUnits[{i}].name"),
        "scalable unit name",
        &mut p,
    );
    let mut cabled = BTreeMap::new();
    for (i, unit) in topology.scalable_units.iter().enumerate() {
        for (j, node) in unit.nodes.iter().enumerate() {
            if let Some(other) = cabled.insert(node.as_str(), unit.name.as_str()) {
                p.push(Problem::new(
                    format!("spec.fabric.topology.scalableUnits[{i}].nodes[{j}]"),
                    format!("node {node:?} is already in scalable unit {other:?}; a node is cabled to one unit"),
                ));
            }
        }
    }
    if let Some(range) = &spec.fabric.partition_keys {
        let first = check_key(&range.first, "spec.fabric.partitionKeys.first", &mut p);
        let last = check_key(&range.last, "spec.fabric.partitionKeys.last", &mut p);
        if let (Some(first), Some(last)) = (first, last)
            && first > last
        {
            p.push(Problem::new(
                "spec.fabric.partitionKeys",
                format!(
                    "first {} is above last {}; valid: first <= last",
                    range.first, range.last
                ),
            ));
        }
    }
    let pools: BTreeSet<_> = spec.gpu_pools.iter().map(|x| x.name.as_str()).collect();
    let catalog = &spec.notebooks;
    duplicates(
        catalog.images.iter().map(|x| x.name.as_str()),
        |i| format!("spec.notebooks.images[{i}].name"),
        "image name",
        &mut p,
    );
    duplicates(
        catalog.profiles.iter().map(|x| x.name.as_str()),
        |i| format!("spec.notebooks.profiles[{i}].name"),
        "profile name",
        &mut p,
    );
    for (i, profile) in catalog.profiles.iter().enumerate() {
        if !pools.contains(profile.pool.as_str()) {
            p.push(Problem::new(
                format!("spec.notebooks.profiles[{i}].pool"),
                format!(
                    "no pool {:?} in this factory; {}",
                    profile.pool,
                    listing(pools.iter().copied())
                ),
            ));
        }
        check_quantity(
            &profile.cpu.0,
            format!("spec.notebooks.profiles[{i}].cpu"),
            &mut p,
        );
        check_quantity(
            &profile.memory.0,
            format!("spec.notebooks.profiles[{i}].memory"),
            &mut p,
        );
    }
    for (i, tier) in spec.storage_tiers.iter().enumerate() {
        check_quantity(
            &tier.capacity.0,
            format!("spec.storageTiers[{i}].capacity"),
            &mut p,
        );
    }
    Problems(p).into_result()
}

fn validate_pool(i: usize, pool: &GpuPool, p: &mut Vec<Problem>) {
    let system = catalog::system(pool.system);
    if let Some(validation) = &pool.validation {
        super::health::validate_node_validation(i, validation, p);
    }
    if pool.node_selector.is_empty() {
        p.push(Problem::new(
            format!("spec.gpuPools[{i}].nodeSelector"),
            "empty selector would take every Node; name at least one label",
        ));
    }
    for (key, value) in &pool.node_selector {
        if !super::metadata::is_label_key(key) || !super::metadata::is_label_value(value) {
            p.push(Problem::new(
                format!("spec.gpuPools[{i}].nodeSelector"),
                format!(
                    "{key:?}: {value:?} is not a label; {}",
                    super::metadata::LABEL_RULES
                ),
            ));
        }
    }
    if let Some(n) = pool.gpus_per_node
        && (n == 0 || n > system.gpus_per_node)
    {
        p.push(Problem::new(
            format!("spec.gpuPools[{i}].gpusPerNode"),
            format!(
                "{} has {} GPUs per node; valid: 1 to {}",
                system.id, system.gpus_per_node, system.gpus_per_node
            ),
        ));
    }
    if let Some(sharing) = &pool.sharing {
        if sharing.mig.is_some() && sharing.time_slicing.is_some() {
            p.push(Problem::new(
                format!("spec.gpuPools[{i}].sharing"),
                "mig and timeSlicing are both set; a pool shares its GPUs one way: set one of them",
            ));
        }
        if let Some(mig) = &sharing.mig
            && !system.mig_profiles.contains(&mig.profile)
        {
            p.push(Problem::new(
                format!("spec.gpuPools[{i}].sharing.mig.profile"),
                format!(
                    "{} ({}) does not support MIG profile {:?}; valid: {}",
                    system.id,
                    system.gpu,
                    mig.profile,
                    system.mig_profiles.join(", ")
                ),
            ));
        }
    }
    if let Some(IntOrString::String(text)) = pool.maintenance.as_ref().map(|m| &m.max_unavailable) {
        let percent = text.strip_suffix('%').and_then(|n| n.parse::<u32>().ok());
        if !matches!(percent, Some(0..=100)) {
            p.push(Problem::new(
                format!("spec.gpuPools[{i}].maintenance.maxUnavailable"),
                format!("{text:?} is neither a node count nor a percentage; valid: an integer or \"0%\" to \"100%\""),
            ));
        }
    }
}
