//! The Factory's status, computed from what was observed. Pure.

use std::collections::HashMap;

use fabbrica_crds::capacity::{gpus_expected, node_gpus};
use fabbrica_crds::names::storage_class_name;
use fabbrica_crds::v1alpha1::{FactoryStatus, PoolStatus};
use fabbrica_crds::validation::Problems;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::placement::Assignment;
use super::validate::ValidatedFactory;
use crate::conditions::{reasons, types};
use crate::nodes::NodeFacts;
use crate::reconcile::conditions::{condition, merge_front, ready, settle};

/// What the apply step observed besides Nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Whether the Multus NetworkAttachmentDefinition CRD is served.
    pub multus: bool,
    /// Where the topology ConfigMap is (`namespace/name`).
    pub topology_config_map: String,
}

const LISTED: usize = 8;

fn listing(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        text.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    text
}

/// The status of a valid Factory.
pub fn build_status(
    factory: &ValidatedFactory,
    assignment: &Assignment,
    facts: &HashMap<String, NodeFacts>,
    observed: &Observed,
    previous: Option<&FactoryStatus>,
    now: &Time,
) -> FactoryStatus {
    let generation = factory.generation;
    let spec = &factory.spec;
    let mut pools = Vec::new();
    let (mut gpus_ready, mut expected) = (0u64, 0u64);
    let mut waiting = Vec::new();
    let mut conflicts = Vec::new();
    for pool in &spec.gpu_pools {
        let members = assignment
            .members
            .get(&pool.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let ready: Vec<&NodeFacts> = members
            .iter()
            .filter_map(|n| facts.get(n))
            .filter(|f| f.ready)
            .collect();
        let pool_gpus_ready: u64 = ready.iter().map(|f| node_gpus(pool, f.gpus)).sum();
        gpus_ready += pool_gpus_ready;
        expected += gpus_expected(pool);
        let conflicting = assignment
            .conflicts
            .get(&pool.name)
            .cloned()
            .unwrap_or_default();
        let status = PoolStatus {
            name: pool.name.clone(),
            nodes_matched: u32::try_from(members.len()).unwrap_or(u32::MAX),
            nodes_ready: u32::try_from(ready.len()).unwrap_or(u32::MAX),
            nodes_expected: pool.expected_nodes,
            gpus_allocatable: ready.iter().map(|f| f.gpus).sum(),
            gpus_ready: Some(pool_gpus_ready),
            conflicting_nodes: conflicting.clone(),
        };
        if status.nodes_ready < status.nodes_expected {
            waiting.push(format!(
                "pool {}: {} of {} expected Nodes ready ({} match its nodeSelector)",
                pool.name, status.nodes_ready, status.nodes_expected, status.nodes_matched
            ));
        }
        if !conflicting.is_empty() {
            conflicts.push(format!(
                "pool {}: Nodes {} also match another pool or belong to another Factory and are left alone; make the nodeSelectors disjoint",
                pool.name,
                listing(&conflicting)
            ));
        }
        pools.push(status);
    }
    let pools_condition = if !conflicts.is_empty() {
        condition(
            types::POOLS_READY,
            false,
            reasons::NODE_CONFLICT,
            conflicts.join("; "),
            generation,
            now,
        )
    } else if !waiting.is_empty() {
        condition(
            types::POOLS_READY,
            false,
            reasons::NODES_NOT_READY,
            waiting.join("; "),
            generation,
            now,
        )
    } else {
        let nodes: u32 = pools.iter().map(|p| p.nodes_ready).sum();
        let message = format!("{} pools, {nodes} Nodes ready", pools.len());
        condition(
            types::POOLS_READY,
            true,
            reasons::POOLS_READY,
            message,
            generation,
            now,
        )
    };
    let fabric_ok = assignment.unplaced.is_empty();
    let fabric_condition = if fabric_ok {
        let units = super::placement::fabric_tree(assignment).len();
        let message = format!(
            "{} Nodes in {units} scalable units; topology in ConfigMap {}",
            assignment.placements.len(),
            observed.topology_config_map
        );
        condition(
            types::FABRIC_READY,
            true,
            reasons::TOPOLOGY_APPLIED,
            message,
            generation,
            now,
        )
    } else {
        let message = format!(
            "{} pool Nodes have no scalable unit ({}); declare them in spec.fabric.topology.scalableUnits or give them the scalableUnitLabel",
            assignment.unplaced.len(),
            listing(&assignment.unplaced)
        );
        condition(
            types::FABRIC_READY,
            false,
            reasons::TOPOLOGY_INCOMPLETE,
            message,
            generation,
            now,
        )
    };
    let classes: Vec<String> = spec
        .storage_tiers
        .iter()
        .map(|t| storage_class_name(&factory.name, &t.name))
        .collect();
    let storage_message = if classes.is_empty() {
        "no storage tiers declared".to_owned()
    } else {
        format!("{} StorageClasses: {}", classes.len(), listing(&classes))
    };
    let storage_condition = condition(
        types::STORAGE_READY,
        true,
        reasons::STORAGE_CLASSES_APPLIED,
        storage_message,
        generation,
        now,
    );
    let attachments = if observed.multus {
        let message = format!(
            "{} NetworkAttachmentDefinitions, one per rail",
            spec.fabric.rails_per_node
        );
        condition(
            types::NETWORK_ATTACHMENTS,
            true,
            reasons::ATTACHMENTS_APPLIED,
            message,
            generation,
            now,
        )
    } else {
        let message = "the Multus NetworkAttachmentDefinition CRD (k8s.cni.cncf.io) is not served; install Multus to get one attachment per rail".to_owned();
        condition(
            types::NETWORK_ATTACHMENTS,
            false,
            reasons::MULTUS_ABSENT,
            message,
            generation,
            now,
        )
    };
    let ready_condition = ready(
        &[&pools_condition, &fabric_condition],
        format!("{gpus_ready} of {expected} GPUs ready"),
        generation,
        now,
    );
    let conditions = vec![
        ready_condition,
        pools_condition,
        fabric_condition,
        storage_condition,
        attachments,
    ];
    FactoryStatus {
        observed_generation: generation,
        conditions: settle(conditions, previous.map_or(&[], |p| &p.conditions)),
        pool_count: u32::try_from(spec.gpu_pools.len()).unwrap_or(u32::MAX),
        gpus_ready,
        gpus_expected: expected,
        pools,
    }
}

/// The status of an invalid Factory: everything as before, and Ready=False with the field paths.
pub fn invalid_status(
    problems: &Problems,
    generation: Option<i64>,
    previous: Option<&FactoryStatus>,
    now: &Time,
) -> FactoryStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    let message = format!("the spec is invalid and nothing was changed: {problems}");
    let ready = condition(
        types::READY,
        false,
        reasons::INVALID_SPEC,
        message,
        generation,
        now,
    );
    merge_front(&mut status.conditions, vec![ready]);
    status
}
