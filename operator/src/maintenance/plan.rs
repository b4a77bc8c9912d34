//! The maintenance state machine, pure: the plan (waves of whole failure domains, made once) and
//! one step of progress from the stored status and what is observed now. The step returns the
//! Nodes' new states and the effects to carry out; [`super::apply`] carries them out.
//!
//! A Node goes `Pending` -> `Cordoned` (tenants told; evictions wait `noticeSeconds`) ->
//! `Draining` (evictions through the Eviction API until no Pod is left) -> `Working` (the action)
//! -> `Done` (uncordoned), or `Failed` (timed out or reported failure; it stays cordoned) or
//! `Skipped` / `Cancelled` when the maintenance is cancelled.

use std::collections::{BTreeMap, HashMap};

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{
    ActionType, AgentSignal, FailureDomain, MaintenanceNode, MaintenanceSpec, WavePolicy,
    WaveStatus,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// Node phases.
pub mod phase {
    /// Not started.
    pub const PENDING: &str = "Pending";
    /// Cordoned; its tenants were told and evictions wait for the notice.
    pub const CORDONED: &str = "Cordoned";
    /// Its Pods are being evicted.
    pub const DRAINING: &str = "Draining";
    /// Drained; the action runs.
    pub const WORKING: &str = "Working";
    /// Released.
    pub const DONE: &str = "Done";
    /// Timed out or reported failure; stays cordoned.
    pub const FAILED: &str = "Failed";
    /// Not started when the maintenance was cancelled.
    pub const SKIPPED: &str = "Skipped";
    /// Under work when the maintenance was cancelled; released.
    pub const CANCELLED: &str = "Cancelled";
}

/// Wave phases.
pub mod wave_phase {
    /// No Node started.
    pub const PENDING: &str = "Pending";
    /// Some Node started, not every one finished.
    pub const RUNNING: &str = "Running";
    /// Every Node finished (done, failed or skipped).
    pub const COMPLETE: &str = "Complete";
}

/// Whether a Node in this phase is finished with.
pub fn terminal(phase: &str) -> bool {
    matches!(
        phase,
        phase::DONE | phase::FAILED | phase::SKIPPED | phase::CANCELLED
    )
}

/// Whether a Node in this phase is held out of service by the maintenance.
pub fn in_progress(phase: &str) -> bool {
    matches!(phase, phase::CORDONED | phase::DRAINING | phase::WORKING)
}

/// What the maintenance reads of a Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Every label.
    pub labels: BTreeMap<String, String>,
    /// The Maintenance that cordoned it ([`labels::MAINTENANCE`]), if any.
    pub held_by: Option<String>,
    /// Its Ready condition is True.
    pub ready: bool,
    /// Cordoned (`spec.unschedulable`), by anyone.
    pub unschedulable: bool,
    /// Tainted [`labels::QUARANTINE`].
    pub quarantined: bool,
    /// `status.nodeInfo.bootID`.
    pub boot_id: Option<String>,
}

impl NodeView {
    /// Projects a Node.
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        Self {
            name: node.name_any(),
            labels: node.labels().clone(),
            held_by: node.labels().get(labels::MAINTENANCE).cloned(),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            quarantined: spec
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == labels::QUARANTINE)),
            boot_id: status
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.boot_id.clone())
                .filter(|b| !b.is_empty()),
        }
    }

    /// Out of service: NotReady, cordoned or quarantined, whoever did it. This is what a pool's
    /// budget counts.
    pub fn out_of_service(&self) -> bool {
        !self.ready || self.unschedulable || self.quarantined
    }

    /// Its pool, from the label the Factory controller writes.
    pub fn pool(&self) -> Option<&str> {
        self.labels.get(labels::POOL).map(String::as_str)
    }
}

/// The Node label a wave policy groups by; none for `node`.
pub fn domain_label(policy: &WavePolicy) -> Option<String> {
    match policy.failure_domain {
        FailureDomain::LeafGroup => Some(labels::LEAF_GROUP.to_owned()),
        FailureDomain::ScalableUnit => Some(labels::SCALABLE_UNIT.to_owned()),
        FailureDomain::NvlinkDomain => Some("nvidia.com/gpu.clique".to_owned()),
        FailureDomain::Label => policy.domain_label.clone(),
        FailureDomain::Node => None,
    }
}

/// A Node the maintenance targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Node name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// Its failure domain: the domain label's value, or its own name without one.
    pub domain: String,
}

/// The Nodes of `pools` (the Factory's Nodes, as labelled by its controller) that carry every
/// label of `selector`, with their failure domain.
pub fn targets<'a>(
    nodes: impl IntoIterator<Item = &'a NodeView>,
    pools: &BTreeMap<String, u32>,
    selector: &BTreeMap<String, String>,
    domain_label: Option<&str>,
) -> Vec<Target> {
    let mut targets: Vec<Target> = nodes
        .into_iter()
        .filter(|n| selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .filter_map(|n| {
            let pool = n.pool().filter(|p| pools.contains_key(*p))?;
            let domain = domain_label
                .and_then(|key| n.labels.get(key))
                .cloned()
                .unwrap_or_else(|| n.name.clone());
            Some(Target {
                name: n.name.clone(),
                pool: pool.to_owned(),
                domain,
            })
        })
        .collect();
    targets.sort_by(|a, b| (&a.domain, &a.name).cmp(&(&b.domain, &b.name)));
    targets
}

/// Groups targets into waves of whole domains, in domain order: a wave takes further domains while
/// it stays within `wave_size` Nodes (the smallest budget of the pools involved); a domain larger
/// than that is a wave of its own and is worked through `wave_size` Nodes at a time.
pub fn waves(targets: &[Target], wave_size: u32) -> (Vec<WaveStatus>, Vec<MaintenanceNode>) {
    let mut domains: Vec<(&str, Vec<&Target>)> = Vec::new();
    for target in targets {
        match domains.last_mut() {
            Some((domain, members)) if *domain == target.domain => members.push(target),
            _ => domains.push((&target.domain, vec![target])),
        }
    }
    let size = wave_size.max(1) as usize;
    let mut waves: Vec<WaveStatus> = Vec::new();
    let mut nodes = Vec::new();
    for (domain, members) in domains {
        let fits = waves
            .last()
            .is_some_and(|w| w.nodes as usize + members.len() <= size);
        if !fits {
            waves.push(WaveStatus {
                index: waves.len() as u32,
                domains: Vec::new(),
                phase: wave_phase::PENDING.to_owned(),
                nodes: 0,
            });
        }
        let wave = waves.last_mut().expect("a wave was just pushed");
        wave.domains.push(domain.to_owned());
        wave.nodes += members.len() as u32;
        nodes.extend(members.into_iter().map(|t| MaintenanceNode {
            name: t.name.clone(),
            pool: t.pool.clone(),
            wave: wave.index,
            phase: phase::PENDING.to_owned(),
            ..MaintenanceNode::default()
        }));
    }
    (waves, nodes)
}

/// What a drain of one Node found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drain {
    /// Pods still on the Node that must leave (terminating ones included).
    pub remaining: usize,
    /// Why an eviction was refused (a PodDisruptionBudget), if one was.
    pub blocked: Option<String>,
}

/// Something to do to the cluster, decided by a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Cordon the Node and mark it as held by this maintenance (unless someone else cordoned it).
    Cordon(String),
    /// Tell the tenants whose Pods run on the Node that they will be evicted.
    Notify(String),
    /// Write the agent's request label.
    Signal {
        /// Node name.
        node: String,
        /// Label key.
        label: String,
        /// Value.
        value: String,
    },
    /// Write the reboot request annotation.
    RequestReboot(String),
    /// Uncordon the Node if this maintenance holds it.
    Uncordon(String),
    /// An Event about the Maintenance.
    Event {
        /// Warning rather than Normal.
        warning: bool,
        /// The Event reason.
        reason: &'static str,
        /// What happened, as a sentence.
        note: String,
    },
}

/// What a step needs besides the stored Nodes.
#[derive(Debug)]
pub struct Input<'a> {
    /// The Maintenance's name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a MaintenanceSpec,
    /// Each targeted pool's budget.
    pub budgets: &'a BTreeMap<String, u32>,
    /// Every Node of the targeted pools, observed now.
    pub nodes: &'a HashMap<String, NodeView>,
    /// Drains carried out this reconcile, for the Nodes that were `Draining`.
    pub drains: &'a HashMap<String, Drain>,
    /// Now.
    pub now: &'a Time,
}

/// The outcome of a step.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Every Node of the plan, in its new state.
    pub nodes: Vec<MaintenanceNode>,
    /// The effects, in the order they are to be carried out.
    pub effects: Vec<Effect>,
    /// Out-of-service Nodes per pool after the step.
    pub unavailable: BTreeMap<String, u32>,
    /// What holds the current wave, if anything does.
    pub held: Option<String>,
}

/// Event reasons of the maintenance controller.
pub mod events {
    /// A wave started.
    pub const WAVE_STARTED: &str = "WaveStarted";
    /// A wave's Nodes all finished.
    pub const WAVE_COMPLETE: &str = "WaveComplete";
    /// A Node failed.
    pub const NODE_FAILED: &str = "NodeFailed";
    /// An eviction was refused (a PodDisruptionBudget).
    pub const EVICTION_BLOCKED: &str = "EvictionBlocked";
    /// Failures reached the threshold; the maintenance paused itself.
    pub const FAILURE_THRESHOLD: &str = "FailureThresholdReached";
    /// Every Node finished.
    pub const COMPLETED: &str = "Completed";
    /// The maintenance was cancelled.
    pub const CANCELLED: &str = "Cancelled";
}

fn seconds_since(then: Option<&Time>, now: &Time) -> i64 {
    then.map(|t| now.0.as_second() - t.0.as_second())
        .unwrap_or(0)
}

fn enter(node: &mut MaintenanceNode, phase: &str, now: &Time) {
    node.phase = phase.to_owned();
    node.since = Some(now.clone());
}

/// One step of the state machine: Nodes under work advance (or time out), then, unless paused,
/// cancelled or past the failure threshold, Nodes of the current wave start as far as every pool's
/// budget allows, counting the pool's Nodes out of service now, whoever took them out.
pub fn step(stored: &[MaintenanceNode], input: &Input<'_>) -> Step {
    let spec = input.spec;
    let now = input.now;
    let mut nodes = stored.to_vec();
    let mut effects = Vec::new();
    let signal = spec.action.signal.clone().unwrap_or_default();
    let halted = halted(spec, stored);

    // Nodes under work.
    for node in nodes.iter_mut().filter(|n| in_progress(&n.phase)) {
        let Some(view) = input.nodes.get(&node.name) else {
            fail(
                node,
                "the Node no longer exists".to_owned(),
                now,
                &mut effects,
            );
            continue;
        };
        if spec.cancel {
            effects.push(Effect::Uncordon(node.name.clone()));
            node.message = Some("released: the maintenance was cancelled".to_owned());
            enter(node, phase::CANCELLED, now);
            continue;
        }
        let elapsed = seconds_since(node.started_at.as_ref(), now);
        if elapsed > i64::from(spec.node_timeout_seconds) {
            let message = format!(
                "not released within {} s (it was {}{}); it stays cordoned",
                spec.node_timeout_seconds,
                node.phase,
                node.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            fail(node, message, now, &mut effects);
            continue;
        }
        match node.phase.as_str() {
            phase::CORDONED => {
                let waited = seconds_since(node.since.as_ref(), now);
                if !halted && waited >= i64::from(spec.notice_seconds) {
                    node.message = None;
                    enter(node, phase::DRAINING, now);
                }
            }
            phase::DRAINING if halted => {}
            phase::DRAINING => match input.drains.get(&node.name) {
                Some(drain) if drain.remaining == 0 => {
                    node.message = None;
                    enter(node, phase::WORKING, now);
                    start_action(node, view, spec.action.type_, &signal, &mut effects);
                }
                Some(drain) => {
                    let message = match &drain.blocked {
                        Some(blocked) => blocked.clone(),
                        None => format!("{} Pods still to leave", drain.remaining),
                    };
                    if drain.blocked.is_some() && node.message.as_ref() != Some(&message) {
                        effects.push(Effect::Event {
                            warning: true,
                            reason: events::EVICTION_BLOCKED,
                            note: format!("Node {}: {message}", node.name),
                        });
                    }
                    node.message = Some(message);
                }
                None => {}
            },
            phase::WORKING => match finished(node, view, input.name, spec.action.type_, &signal) {
                Some(Ok(())) => {
                    effects.push(Effect::Uncordon(node.name.clone()));
                    node.message = None;
                    enter(node, phase::DONE, now);
                }
                Some(Err(message)) => fail(node, message, now, &mut effects),
                None => {}
            },
            _ => {}
        }
    }

    // Out of service now, per pool, counting every Node of the pool.
    let mut unavailable: BTreeMap<String, u32> =
        input.budgets.keys().map(|p| (p.clone(), 0)).collect();
    for view in input.nodes.values() {
        if let Some(count) = view.pool().and_then(|p| unavailable.get_mut(p))
            && view.out_of_service()
        {
            *count += 1;
        }
    }
    // Nodes this step released come back; those it cordons go out below.
    for effect in &effects {
        if let Effect::Uncordon(name) = effect
            && let Some(view) = input.nodes.get(name)
            && view.held_by.as_deref() == Some(input.name)
            && view.ready
            && !view.quarantined
            && let Some(count) = view.pool().and_then(|p| unavailable.get_mut(p))
        {
            *count = count.saturating_sub(1);
        }
    }

    let failed = nodes.iter().filter(|n| n.phase == phase::FAILED).count() as u32;
    let mut held = None;
    if spec.cancel {
        for node in nodes.iter_mut().filter(|n| n.phase == phase::PENDING) {
            enter(node, phase::SKIPPED, now);
        }
    } else if !spec.paused && failed < spec.failure_threshold {
        let current = nodes
            .iter()
            .filter(|n| !terminal(&n.phase))
            .map(|n| n.wave)
            .min();
        if let Some(wave) = current {
            let starting = nodes
                .iter()
                .all(|n| n.wave != wave || n.phase == phase::PENDING);
            let mut waiting: BTreeMap<String, u32> = BTreeMap::new();
            for node in nodes
                .iter_mut()
                .filter(|n| n.wave == wave && n.phase == phase::PENDING)
            {
                let Some(view) = input.nodes.get(&node.name) else {
                    node.message = Some("the Node no longer exists".to_owned());
                    enter(node, phase::SKIPPED, now);
                    continue;
                };
                let budget = input.budgets.get(&node.pool).copied().unwrap_or(0);
                let count = unavailable.entry(node.pool.clone()).or_default();
                // A Node already out of service costs the budget nothing more.
                if !view.out_of_service() {
                    if *count >= budget {
                        *waiting.entry(node.pool.clone()).or_default() += 1;
                        continue;
                    }
                    *count += 1;
                }
                node.started_at = Some(now.clone());
                node.message = None;
                enter(node, phase::CORDONED, now);
                effects.push(Effect::Cordon(node.name.clone()));
                effects.push(Effect::Notify(node.name.clone()));
            }
            let started = nodes
                .iter()
                .any(|n| n.wave == wave && n.phase != phase::PENDING);
            if starting && started {
                effects.push(Effect::Event {
                    warning: false,
                    reason: events::WAVE_STARTED,
                    note: format!("wave {wave} started"),
                });
            }
            if !waiting.is_empty() {
                let pools: Vec<String> = waiting
                    .iter()
                    .map(|(pool, n)| {
                        format!(
                            "{n} Nodes of pool {pool} wait for its budget ({} of {} out of service)",
                            unavailable.get(pool).copied().unwrap_or(0),
                            input.budgets.get(pool).copied().unwrap_or(0)
                        )
                    })
                    .collect();
                held = Some(format!("wave {wave}: {}", pools.join("; ")));
            }
        }
    }
    Step {
        nodes,
        effects,
        unavailable,
        held,
    }
}

/// Whether evictions and new Nodes are stopped: paused or cancelled by the spec, or as many
/// Nodes failed as the failure threshold allows.
pub fn halted(spec: &MaintenanceSpec, nodes: &[MaintenanceNode]) -> bool {
    let failed = nodes.iter().filter(|n| n.phase == phase::FAILED).count();
    spec.paused || spec.cancel || failed >= spec.failure_threshold as usize
}

fn fail(node: &mut MaintenanceNode, message: String, now: &Time, effects: &mut Vec<Effect>) {
    effects.push(Effect::Event {
        warning: true,
        reason: events::NODE_FAILED,
        note: format!("Node {}: {message}", node.name),
    });
    node.message = Some(message);
    enter(node, phase::FAILED, now);
}

fn start_action(
    node: &mut MaintenanceNode,
    view: &NodeView,
    action: ActionType,
    signal: &AgentSignal,
    effects: &mut Vec<Effect>,
) {
    match action {
        ActionType::Drain => {}
        ActionType::AgentSignal => {
            if let Some(value) = &signal.request {
                effects.push(Effect::Signal {
                    node: node.name.clone(),
                    label: signal.label.clone(),
                    value: value.clone(),
                });
            }
        }
        ActionType::Reboot => {
            node.boot_id = view.boot_id.clone();
            effects.push(Effect::RequestReboot(node.name.clone()));
        }
    }
}

/// Whether the action on a `Working` Node finished: `Ok` done, `Err` failed with why.
fn finished(
    node: &MaintenanceNode,
    view: &NodeView,
    name: &str,
    action: ActionType,
    signal: &AgentSignal,
) -> Option<Result<(), String>> {
    match action {
        ActionType::Drain => (view
            .labels
            .get(labels::MAINTENANCE_DONE)
            .map(String::as_str)
            == Some(name))
        .then_some(Ok(())),
        ActionType::AgentSignal => match view.labels.get(&signal.label) {
            Some(value) if *value == signal.done => Some(Ok(())),
            Some(value) if *value == signal.failed => {
                Some(Err(format!("the agent reported {}={value}", signal.label)))
            }
            _ => None,
        },
        ActionType::Reboot => {
            (view.ready && view.boot_id.is_some() && view.boot_id != node.boot_id).then_some(Ok(()))
        }
    }
}

#[cfg(test)]
mod tests;
