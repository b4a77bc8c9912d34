//! The Factory's status, computed from what was observed. Pure.

use fabbrica_crds::capacity::{gpus_expected, node_gpus};
use fabbrica_crds::names::storage_class_name;
use fabbrica_crds::v1alpha1::{FactoryStatus, PoolStatus, QuarantinedNode};
use fabbrica_crds::validation::Problems;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::placement::Assignment;
use super::validate::ValidatedFactory;
use crate::conditions::{reasons, types};
use crate::health::drift::Drift;
use crate::nodes::{Facts, NodeFacts};
use crate::reconcile::conditions::{condition, merge_front, ready, settle};

/// What the apply step observed besides Nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Whether the Multus NetworkAttachmentDefinition CRD is served.
    pub multus: bool,
    /// Where the topology ConfigMap is (`namespace/name`).
    pub topology_config_map: String,
    /// Where the device-plugin ConfigMap is (`namespace/name`).
    pub device_plugin_config_map: String,
    /// The parts that could not be written; the others were.
    pub failed: FailedParts,
    /// The pools' validating and quarantined Nodes.
    pub health: crate::health::Report,
    /// The discovered placement against the declared one; none when it is the source.
    pub drift: Option<crate::health::drift::Drift>,
}

/// Why a part could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartFailure {
    /// The namespace it goes in does not exist and is another component's to create.
    NamespaceMissing(String),
    /// Writing it failed; the error as a sentence.
    Failed(String),
}

/// The parts of a Factory that could not be written, each with its error as a sentence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailedParts {
    /// The StorageClasses.
    pub storage_classes: Option<String>,
    /// The GPU Operator's device-plugin ConfigMap.
    pub device_plugin: Option<PartFailure>,
    /// The topology ConfigMap.
    pub topology: Option<String>,
    /// The Multus attachments.
    pub attachments: Option<String>,
    /// The Nodes' labels and taints (a Node conflict, retried at once, is none).
    pub nodes: Option<String>,
}

/// Whether a condition's reason says a part could not be written (rather than not being ready).
fn is_failed_write(condition: &Condition) -> bool {
    condition.status != "True"
        && [reasons::APPLY_FAILED, reasons::NAMESPACE_MISSING].contains(&condition.reason.as_str())
}

/// The parts the status reports as not written, `Type: message` joined by `; `; empty when
/// every part was written.
pub fn failed_parts(conditions: &[Condition]) -> String {
    conditions
        .iter()
        .filter(|c| c.type_ != types::READY && is_failed_write(c))
        .map(|c| format!("{}: {}", c.type_, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

const LISTED: usize = 8;

fn listing(names: &[impl AsRef<str>]) -> String {
    let mut text = names
        .iter()
        .take(LISTED)
        .map(AsRef::as_ref)
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
    facts: &Facts,
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
        let health = observed.health.pools.get(&pool.name);
        let ready: Vec<&NodeFacts> = members
            .iter()
            .filter(|n| !observed.health.holds(&pool.name, n))
            .filter_map(|n| facts.get(n).map(AsRef::as_ref))
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
            conflicting_nodes: conflicting.iter().map(ToString::to_string).collect(),
            nodes_validating: health.map_or(0, |h| count(h.validating.len())),
            nodes_quarantined: health.map_or(0, |h| count(h.quarantined.len())),
            quarantined_nodes: health
                .map(|h| {
                    h.quarantined
                        .iter()
                        .take(QUARANTINED_LISTED)
                        .map(|(name, reason)| QuarantinedNode {
                            name: name.clone(),
                            reason: *reason,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        if status.nodes_ready < status.nodes_expected {
            let mut held = String::new();
            if status.nodes_validating > 0 {
                held.push_str(&format!(", {} validating", status.nodes_validating));
            }
            if let Some(h) = health.filter(|h| !h.quarantined.is_empty()) {
                let names: Vec<String> = h.quarantined.keys().cloned().collect();
                held.push_str(&format!(", quarantined: {}", listing(&names)));
            }
            waiting.push(format!(
                "pool {}: {} of {} expected Nodes ready ({} match its nodeSelector{held})",
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
    let failed = &observed.failed;
    let pools_condition = if let Some(err) = &failed.nodes {
        condition(
            types::POOLS_READY,
            false,
            reasons::APPLY_FAILED,
            format!("not every Node's labels and taints were written: {err}"),
            generation,
            now,
        )
    } else if !conflicts.is_empty() {
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
    let fabric_condition = if let Some(err) = &failed.topology {
        let message = format!(
            "the topology ConfigMap {} is not written: {err}",
            observed.topology_config_map
        );
        condition(
            types::FABRIC_READY,
            false,
            reasons::APPLY_FAILED,
            message,
            generation,
            now,
        )
    } else if fabric_ok {
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
    let storage_condition = match &failed.storage_classes {
        Some(err) => condition(
            types::STORAGE_READY,
            false,
            reasons::APPLY_FAILED,
            format!("not every StorageClass is written: {err}"),
            generation,
            now,
        ),
        None => condition(
            types::STORAGE_READY,
            true,
            reasons::STORAGE_CLASSES_APPLIED,
            storage_message,
            generation,
            now,
        ),
    };
    let device_plugin = device_plugin_condition(factory, observed, now);
    let attachments = if let (true, Some(err)) = (observed.multus, &failed.attachments) {
        let message = format!("the NetworkAttachmentDefinitions are not all written: {err}");
        condition(
            types::NETWORK_ATTACHMENTS,
            false,
            reasons::APPLY_FAILED,
            message,
            generation,
            now,
        )
    } else if observed.multus {
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
    let parts = [
        &pools_condition,
        &fabric_condition,
        &storage_condition,
        &device_plugin,
    ];
    let mut ready_condition = ready(
        &parts,
        format!("{gpus_ready} of {expected} GPUs ready"),
        generation,
        now,
    );
    // A part that could not be written says so in Ready's reason, not just NotReady.
    if let Some(part) = parts.iter().find(|c| is_failed_write(c)) {
        ready_condition.reason.clone_from(&part.reason);
    }
    let mut conditions = vec![
        ready_condition,
        pools_condition,
        fabric_condition,
        storage_condition,
        device_plugin,
        attachments,
    ];
    conditions.push(drift_condition(observed.drift.as_ref(), generation, now));
    FactoryStatus {
        observed_generation: generation,
        conditions: settle(conditions, previous.map_or(&[], |p| &p.conditions)),
        pool_count: u32::try_from(spec.gpu_pools.len()).unwrap_or(u32::MAX),
        gpus_ready,
        gpus_expected: expected,
        pools,
    }
}

/// Quarantined Nodes a pool's status lists by name.
const QUARANTINED_LISTED: usize = 32;

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `FabricMatchesDeclaration`: the Nodes whose discovered leaf or unit contradicts the
/// declaration, by name (a bounded list and the count).
fn drift_condition(drift: Option<&Drift>, generation: Option<i64>, now: &Time) -> Condition {
    let type_ = types::FABRIC_MATCHES_DECLARATION;
    let Some(drift) = drift else {
        let message = "the placement is read from the discovery labels (source: discovered)";
        return condition(
            type_,
            true,
            reasons::PLACEMENT_DISCOVERED,
            message,
            generation,
            now,
        );
    };
    if drift.checked == 0 {
        let message = "no pool Node carries discovered topology labels (Topograph's, or spec.fabric.topology.discovery's)";
        return condition(
            type_,
            true,
            reasons::NOTHING_DISCOVERED,
            message,
            generation,
            now,
        );
    }
    if drift.drifted.is_empty() {
        let message = format!(
            "{} Nodes with discovered topology labels sit in their declared leaf groups and units",
            drift.checked
        );
        return condition(
            type_,
            true,
            reasons::FABRIC_MATCHES,
            message,
            generation,
            now,
        );
    }
    let named: Vec<String> = drift
        .drifted
        .iter()
        .map(|(node, what)| format!("{node} ({what})"))
        .collect();
    let message = format!(
        "{} of {} Nodes with discovered topology labels are cabled elsewhere than declared: {}; fix the cabling or the declaration, or set spec.fabric.topology.source to discovered",
        named.len(),
        drift.checked,
        listing(&named)
    );
    condition(
        type_,
        false,
        reasons::FABRIC_DRIFT,
        message,
        generation,
        now,
    )
}

/// `DevicePluginConfig`: the GPU Operator's device-plugin ConfigMap is written, or why not, and
/// how to fix it when its namespace is missing.
fn device_plugin_condition(
    factory: &ValidatedFactory,
    observed: &Observed,
    now: &Time,
) -> Condition {
    let generation = factory.generation;
    let config_map = &observed.device_plugin_config_map;
    match &observed.failed.device_plugin {
        None => condition(
            types::DEVICE_PLUGIN_CONFIG,
            true,
            reasons::DEVICE_PLUGIN_CONFIG_APPLIED,
            format!(
                "device-plugin configuration of {} pools in ConfigMap {config_map}",
                factory.spec.gpu_pools.len()
            ),
            generation,
            now,
        ),
        Some(PartFailure::NamespaceMissing(namespace)) => condition(
            types::DEVICE_PLUGIN_CONFIG,
            false,
            reasons::NAMESPACE_MISSING,
            format!(
                "namespace {namespace} does not exist, so the GPU Operator's device-plugin ConfigMap {config_map} is not written; install the NVIDIA GPU Operator in {namespace}, or set the operator's GPU Operator namespace (--gpu-operator-namespace, FABBRICA_GPU_OPERATOR_NAMESPACE, the chart's gpuOperatorNamespace) to where it runs"
            ),
            generation,
            now,
        ),
        Some(PartFailure::Failed(err)) => condition(
            types::DEVICE_PLUGIN_CONFIG,
            false,
            reasons::APPLY_FAILED,
            format!("the device-plugin ConfigMap {config_map} is not written: {err}"),
            generation,
            now,
        ),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use fabbrica_crds::v1alpha1::{Factory, condition as find};
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::factory::placement::assign;
    use crate::factory::validate::validate;
    use crate::nodes::{NodeMeta, NodeMetas};

    fn factory() -> ValidatedFactory {
        let factory: Factory =
            serde_saphyr::from_str(include_str!("../../tests/fixtures/factory.yaml")).unwrap();
        validate(&factory).unwrap()
    }

    /// The fixture's four pool Nodes, every one placed in a scalable unit, Ready with its GPUs.
    fn placed() -> (Assignment, Facts) {
        let metas: NodeMetas = [("a1", "h100"), ("a2", "h100"), ("b1", "b200")]
            .into_iter()
            .map(|(name, gpu)| {
                let meta = NodeMeta {
                    labels: [("gpu", gpu)].into_iter().collect(),
                    ..NodeMeta::default()
                };
                (name.into(), Arc::new(meta))
            })
            .collect();
        let assignment = assign(&factory(), &metas);
        let facts = metas
            .keys()
            .map(|name| {
                let facts = NodeFacts {
                    resource_version: "1".to_owned(),
                    ready: true,
                    gpus: 8,
                    taints: Default::default(),
                };
                (name.clone(), Arc::new(facts))
            })
            .collect();
        (assignment, facts)
    }

    fn observed(failed: FailedParts) -> Observed {
        Observed {
            multus: false,
            topology_config_map: "fabbrica-system/it4lia-topology".to_owned(),
            device_plugin_config_map: "gpu-operator/it4lia-device-plugin".to_owned(),
            failed,
            ..Observed::default()
        }
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_000).unwrap())
    }

    #[test]
    fn a_missing_gpu_operator_namespace_is_reported_with_the_fix_and_names_the_part_in_ready() {
        let (assignment, facts) = placed();
        let failed = FailedParts {
            device_plugin: Some(PartFailure::NamespaceMissing("gpu-operator".to_owned())),
            ..FailedParts::default()
        };
        let status = build_status(
            &factory(),
            &assignment,
            &facts,
            &observed(failed),
            None,
            &now(),
        );
        let plugin = find(&status.conditions, types::DEVICE_PLUGIN_CONFIG).unwrap();
        assert_eq!(
            (plugin.status.as_str(), plugin.reason.as_str()),
            ("False", "NamespaceMissing")
        );
        for words in [
            "namespace gpu-operator does not exist",
            "gpu-operator/it4lia-device-plugin",
            "install the NVIDIA GPU Operator",
            "--gpu-operator-namespace",
        ] {
            assert!(
                plugin.message.contains(words),
                "{words}: {}",
                plugin.message
            );
        }
        let ready = find(&status.conditions, types::READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NamespaceMissing")
        );
        assert!(
            ready
                .message
                .contains("DevicePluginConfig: namespace gpu-operator does not exist"),
            "{}",
            ready.message
        );
        // The parts that were written say so.
        for type_ in [types::STORAGE_READY, types::FABRIC_READY] {
            assert_eq!(
                find(&status.conditions, type_).map(|c| c.status.as_str()),
                Some("True"),
                "{type_}"
            );
        }
        assert_eq!(
            failed_parts(&status.conditions),
            format!("DevicePluginConfig: {}", plugin.message)
        );
    }

    #[test]
    fn a_failed_write_names_its_part_with_the_api_servers_answer() {
        let (assignment, facts) = placed();
        let error = "writing StorageClass it4lia-scratch failed: storageclasses.storage.k8s.io \"it4lia-scratch\" is forbidden";
        let failed = FailedParts {
            storage_classes: Some(error.to_owned()),
            topology: Some("writing ConfigMap fabbrica-system/it4lia-topology failed: the server is shutting down".to_owned()),
            ..FailedParts::default()
        };
        let status = build_status(
            &factory(),
            &assignment,
            &facts,
            &observed(failed),
            None,
            &now(),
        );
        let storage = find(&status.conditions, types::STORAGE_READY).unwrap();
        assert_eq!(
            (storage.status.as_str(), storage.reason.as_str()),
            ("False", "ApplyFailed")
        );
        assert!(storage.message.ends_with(error), "{}", storage.message);
        let fabric = find(&status.conditions, types::FABRIC_READY).unwrap();
        assert_eq!(fabric.reason, "ApplyFailed");
        assert!(fabric.message.contains("fabbrica-system/it4lia-topology"));
        let ready = find(&status.conditions, types::READY).unwrap();
        assert_eq!(ready.reason, "ApplyFailed");
        assert!(
            ready
                .message
                .contains("StorageReady: not every StorageClass")
        );
        assert!(
            ready
                .message
                .contains("FabricReady: the topology ConfigMap")
        );
        // Pool figures are reported as usual.
        assert_eq!(
            status
                .pools
                .iter()
                .map(|p| p.nodes_ready)
                .collect::<Vec<_>>(),
            [2, 1]
        );
    }

    #[test]
    fn with_every_part_written_nothing_is_reported_as_failed() {
        let (assignment, facts) = placed();
        let status = build_status(
            &factory(),
            &assignment,
            &facts,
            &observed(FailedParts::default()),
            None,
            &now(),
        );
        assert_eq!(failed_parts(&status.conditions), "");
        let plugin = find(&status.conditions, types::DEVICE_PLUGIN_CONFIG).unwrap();
        assert_eq!(
            (plugin.status.as_str(), plugin.reason.as_str()),
            ("True", "DevicePluginConfigApplied")
        );
        let ready = find(&status.conditions, types::READY).unwrap();
        assert_ne!(ready.reason, "NamespaceMissing");
        assert_ne!(ready.reason, "ApplyFailed");
    }

    #[test]
    fn quarantined_and_validating_nodes_leave_nodes_ready_and_drift_names_its_nodes() {
        use fabbrica_crds::v1alpha1::QuarantineReason;

        use crate::health::{PoolHealth, Report};

        let (assignment, facts) = placed();
        let health = Report {
            pools: BTreeMap::from([(
                "h100".to_owned(),
                PoolHealth {
                    validating: ["a2".to_owned()].into(),
                    quarantined: [("a1".to_owned(), QuarantineReason::GpusMissing)].into(),
                },
            )]),
        };
        let drift = crate::health::drift::Drift {
            checked: 3,
            drifted: BTreeMap::from([("b1".to_owned(), "leaf")]),
        };
        let observed = Observed {
            health,
            drift: Some(drift),
            ..observed(FailedParts::default())
        };
        let status = build_status(&factory(), &assignment, &facts, &observed, None, &now());
        let pool = status.pools.iter().find(|p| p.name == "h100").unwrap();
        assert_eq!((pool.nodes_matched, pool.nodes_ready), (2, 0));
        assert_eq!((pool.nodes_validating, pool.nodes_quarantined), (1, 1));
        assert_eq!(pool.quarantined_nodes[0].name, "a1");
        let pools = find(&status.conditions, types::POOLS_READY).unwrap();
        assert!(
            pools.message.contains("1 validating, quarantined: a1"),
            "{}",
            pools.message
        );
        let drift = find(&status.conditions, types::FABRIC_MATCHES_DECLARATION).unwrap();
        assert_eq!(
            (drift.status.as_str(), drift.reason.as_str()),
            ("False", "FabricDrift")
        );
        assert!(
            drift.message.starts_with("1 of 3 Nodes"),
            "{}",
            drift.message
        );
        assert!(drift.message.contains("b1 (leaf)"), "{}", drift.message);
        let ready = find(&status.conditions, types::READY).unwrap();
        assert!(
            !ready.message.contains("FabricMatchesDeclaration"),
            "drift informs, it does not make the Factory unready"
        );
    }
}
