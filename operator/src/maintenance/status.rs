//! The status of a Maintenance from its Nodes' states. Pure.

use std::collections::BTreeMap;

use fabbrica_crds::v1alpha1::{
    MaintenanceNode, MaintenanceSpec, MaintenanceStatus, PoolBudget, WaveStatus,
};
use fabbrica_crds::validation::Problems;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{phase, terminal, wave_phase};
use crate::conditions::{reasons, types};
use crate::reconcile::conditions::{condition, settle};

/// Maintenance phases.
pub mod phases {
    /// Waiting to make its plan.
    pub const PENDING: &str = "Pending";
    /// Working through its waves.
    pub const RUNNING: &str = "Running";
    /// Paused by its spec, or by itself at the failure threshold.
    pub const PAUSED: &str = "Paused";
    /// Every Node is done.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Every Node finished, some failed.
    pub const FAILED: &str = "Failed";
    /// Cancelled.
    pub const CANCELLED: &str = "Cancelled";
    /// The spec is invalid; nothing was done.
    pub const INVALID: &str = "Invalid";
}

/// Whether a maintenance in this phase has nothing more to do.
pub fn finished(phase: Option<&str>) -> bool {
    matches!(
        phase,
        Some(phases::SUCCEEDED | phases::FAILED | phases::CANCELLED)
    )
}

/// The waves with their phases recomputed from their Nodes.
pub fn wave_phases(waves: &[WaveStatus], nodes: &[MaintenanceNode]) -> Vec<WaveStatus> {
    waves
        .iter()
        .map(|wave| {
            let members: Vec<&MaintenanceNode> =
                nodes.iter().filter(|n| n.wave == wave.index).collect();
            let phase = if members.iter().all(|n| terminal(&n.phase)) {
                wave_phase::COMPLETE
            } else if members.iter().any(|n| n.phase != phase::PENDING) {
                wave_phase::RUNNING
            } else {
                wave_phase::PENDING
            };
            WaveStatus {
                phase: phase.to_owned(),
                ..wave.clone()
            }
        })
        .collect()
}

/// What the status is built from.
#[derive(Debug)]
pub struct Progress<'a> {
    /// The Label the waves are grouped by.
    pub domain_label: Option<String>,
    /// The waves as planned.
    pub waves: &'a [WaveStatus],
    /// Every Node, in its new state.
    pub nodes: Vec<MaintenanceNode>,
    /// Each pool's budget.
    pub budgets: &'a BTreeMap<String, u32>,
    /// Out of service per pool.
    pub unavailable: &'a BTreeMap<String, u32>,
    /// What holds the current wave, if anything.
    pub held: Option<String>,
}

/// The status after a step.
pub fn build_status(
    spec: &MaintenanceSpec,
    progress: Progress<'_>,
    generation: Option<i64>,
    previous: Option<&MaintenanceStatus>,
    now: &Time,
) -> MaintenanceStatus {
    let nodes = progress.nodes;
    let count = |p: &str| nodes.iter().filter(|n| n.phase == p).count() as u32;
    let done = count(phase::DONE);
    let failed = count(phase::FAILED);
    let waves = wave_phases(progress.waves, &nodes);
    let current_wave = nodes
        .iter()
        .filter(|n| !terminal(&n.phase))
        .map(|n| n.wave)
        .min();
    let all_finished = nodes.iter().all(|n| terminal(&n.phase));
    let draining_held = nodes
        .iter()
        .filter(|n| n.phase == phase::DRAINING)
        .find_map(|n| n.message.as_ref().map(|m| format!("Node {}: {m}", n.name)));
    let (phase, reason, message) = if spec.cancel {
        (
            phases::CANCELLED,
            reasons::MAINTENANCE_CANCELLED,
            format!("cancelled with {done} of {} Nodes done", nodes.len()),
        )
    } else if all_finished && failed > 0 {
        (
            phases::FAILED,
            reasons::NODES_FAILED,
            format!(
                "{done} of {} Nodes done, {failed} failed and left cordoned",
                nodes.len()
            ),
        )
    } else if all_finished {
        (
            phases::SUCCEEDED,
            reasons::MAINTENANCE_COMPLETE,
            format!("all {} Nodes done", nodes.len()),
        )
    } else if spec.paused {
        (
            phases::PAUSED,
            reasons::PAUSED_BY_SPEC,
            "paused by spec.paused: no further Node is cordoned and nothing more is evicted"
                .to_owned(),
        )
    } else if failed >= spec.failure_threshold {
        (
            phases::PAUSED,
            reasons::FAILURE_THRESHOLD,
            format!(
                "{failed} Nodes failed, reaching spec.failureThreshold {}; raise it to go on: {}",
                spec.failure_threshold,
                failed_names(&nodes)
            ),
        )
    } else {
        let what = draining_held
            .or(progress.held)
            .unwrap_or_else(|| match current_wave {
                Some(wave) => format!("wave {wave} of {} in progress", waves.len()),
                None => "planning".to_owned(),
            });
        (phases::RUNNING, reasons::IN_PROGRESS, what)
    };
    let previous_conditions = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = settle(
        vec![
            condition(
                types::READY,
                true,
                reasons::PLANNED,
                format!(
                    "{} Nodes in {} waves of whole failure domains",
                    nodes.len(),
                    waves.len()
                ),
                generation,
                now,
            ),
            condition(
                types::PROGRESSING,
                phase == phases::RUNNING,
                reason,
                message.clone(),
                generation,
                now,
            ),
        ],
        previous_conditions,
    );
    let budgets = progress
        .budgets
        .iter()
        .map(|(pool, max)| PoolBudget {
            pool: pool.clone(),
            max_unavailable: *max,
            unavailable: progress.unavailable.get(pool).copied().unwrap_or(0),
        })
        .collect();
    MaintenanceStatus {
        observed_generation: generation,
        conditions,
        phase: Some(phase.to_owned()),
        message: Some(message),
        domain_label: progress.domain_label,
        current_wave: current_wave.filter(|_| !spec.cancel),
        nodes_total: nodes.len() as u32,
        nodes_done: done,
        nodes_failed: failed,
        budgets,
        waves,
        nodes,
    }
}

fn failed_names(nodes: &[MaintenanceNode]) -> String {
    nodes
        .iter()
        .filter(|n| n.phase == phase::FAILED)
        .map(|n| format!("{} ({})", n.name, n.message.as_deref().unwrap_or("failed")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status of a refused spec: Ready=False with every field path; nothing else changes.
pub fn invalid_status(
    problems: &Problems,
    generation: Option<i64>,
    previous: Option<&MaintenanceStatus>,
    now: &Time,
) -> MaintenanceStatus {
    refused(
        reasons::INVALID_SPEC,
        phases::INVALID,
        format!("nothing was done: {problems}"),
        generation,
        previous,
        now,
    )
}

/// A status that says why nothing is done (an invalid spec, a missing Factory), keeping the
/// plan and progress as stored; `phase` when there is no plan yet.
pub fn refused(
    reason: &str,
    phase: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&MaintenanceStatus>,
    now: &Time,
) -> MaintenanceStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let changed = vec![
        condition(
            types::READY,
            false,
            reason,
            message.clone(),
            generation,
            now,
        ),
        condition(
            types::PROGRESSING,
            false,
            reason,
            message.clone(),
            generation,
            now,
        ),
    ];
    crate::reconcile::conditions::merge_front(&mut status.conditions, changed);
    status.observed_generation = generation;
    if status.nodes.is_empty() {
        status.phase = Some(phase.to_owned());
    }
    status.message = Some(message);
    status
}
