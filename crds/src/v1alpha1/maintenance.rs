//! `Maintenance`: day-2 work on a Factory's Nodes, declared once and carried out in waves of whole
//! failure domains under each pool's disruption budget (`spec.gpuPools[].maintenance`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, conditions_schema};

/// The GPU Operator's driver-upgrade state label, the default signal of `agentSignal`.
pub const GPU_DRIVER_UPGRADE_STATE: &str = "nvidia.com/gpu-driver-upgrade-state";

/// A Maintenance carries out one piece of day-2 work (hardware work, a driver upgrade, a reboot)
/// on Nodes of a Factory: cordon, tell the tenants, evict through the Eviction API so
/// PodDisruptionBudgets hold, do the work, release. Nodes go in waves of whole failure domains,
/// never more of a pool out of service at once than the pool's `maintenance.maxUnavailable`. All
/// progress is in the status, so an operator restart resumes where it was.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fabbrica.io",
    version = "v1alpha1",
    kind = "Maintenance",
    doc = "A Maintenance drains, upgrades or reboots a Factory's Nodes in waves of whole failure domains under each pool's disruption budget.",
    plural = "maintenances",
    shortname = "mnt",
    category = "fabbrica",
    status = "MaintenanceStatus",
    printcolumn(name = "Factory", type_ = "string", json_path = ".spec.factory"),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action.type"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Wave", type_ = "integer", json_path = ".status.currentWave"),
    printcolumn(name = "Done", type_ = "integer", json_path = ".status.nodesDone"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodesTotal"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
    "message": "a cancelled maintenance stays cancelled; create a new Maintenance to start again",
    "fieldPath": ".cancel",
}]))]
pub struct MaintenanceSpec {
    /// The Factory whose Nodes are maintained; its pools' `maintenance.maxUnavailable` is the budget.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "the factory of a maintenance cannot change; create a new Maintenance",
    }]))]
    pub factory: String,
    /// Pools of the Factory to maintain; every pool when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "set"))]
    pub pools: Vec<String>,
    /// Only the pools' Nodes carrying all these labels; every Node of the pools when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// What is done to each Node once it is cordoned and drained.
    pub action: MaintenanceAction,
    /// How Nodes are grouped into waves.
    #[serde(default)]
    pub waves: WavePolicy,
    /// Seconds a Node may take from cordon to release before it counts as failed (a failed Node
    /// stays cordoned for a person to look at).
    #[serde(default = "default_node_timeout")]
    #[schemars(range(min = 1, max = 604_800))]
    pub node_timeout_seconds: u32,
    /// Failed Nodes at which the maintenance pauses itself; raise it to go on past failures.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100_000))]
    pub failure_threshold: u32,
    /// Seconds between the notice to the tenants whose Pods run on a Node (an Event in their
    /// namespace) and the first eviction there.
    #[serde(default)]
    #[schemars(range(min = 0, max = 86_400))]
    pub notice_seconds: u32,
    /// While true, no further Node is cordoned and nothing more is evicted; Nodes already under
    /// work are still released when their work is done. Set it back to false to resume.
    #[serde(default)]
    pub paused: bool,
    /// Stops the maintenance for good: Nodes not started are skipped, Nodes it cordoned (except
    /// failed ones) are uncordoned. Cannot be undone.
    #[serde(default)]
    pub cancel: bool,
}

fn default_node_timeout() -> u32 {
    3600
}

fn default_failure_threshold() -> u32 {
    1
}

/// What is done to a drained Node before it is released.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.signal) || self.type == 'agentSignal'",
        "message": "signal is only read with type agentSignal",
        "fieldPath": ".signal",
    },
    {
        "rule": "self == oldSelf",
        "message": "the action of a maintenance cannot change; create a new Maintenance",
    },
]))]
pub struct MaintenanceAction {
    /// `drain` (hardware work: the Node is released once someone labels it
    /// `fabbrica.io/maintenance-done=<maintenance name>`), `agentSignal` (an agent on the Node,
    /// such as the GPU Operator's driver upgrade, reports through a Node label) or `reboot`
    /// (the annotation `fabbrica.io/reboot-requested` is written for a reboot agent; the Node is
    /// released when it reports a new boot ID and is Ready).
    #[serde(rename = "type")]
    pub type_: ActionType,
    /// With `agentSignal`: the label the agent reports on; the GPU Operator's
    /// `nvidia.com/gpu-driver-upgrade-state` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<AgentSignal>,
}

/// The kinds of work a Maintenance does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActionType {
    /// Drain for hardware work; released when labelled `fabbrica.io/maintenance-done=<name>`.
    Drain,
    /// Wait for an agent's signal in a Node label.
    AgentSignal,
    /// Request a reboot and wait for a new boot.
    Reboot,
}

impl ActionType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::AgentSignal => "agentSignal",
            Self::Reboot => "reboot",
        }
    }
}

/// A Node label through which an agent is asked to work and reports the outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSignal {
    /// The label key.
    #[serde(default = "default_signal_label")]
    #[schemars(length(min = 1, max = 316))]
    pub label: String,
    /// Written to the label once the Node is drained, to ask the agent to start
    /// (`upgrade-required`); nothing is written when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub request: Option<String>,
    /// The value that means the work succeeded.
    #[serde(default = "default_signal_done")]
    #[schemars(length(min = 1, max = 63))]
    pub done: String,
    /// The value that means the work failed.
    #[serde(default = "default_signal_failed")]
    #[schemars(length(min = 1, max = 63))]
    pub failed: String,
}

impl Default for AgentSignal {
    fn default() -> Self {
        Self {
            label: default_signal_label(),
            request: None,
            done: default_signal_done(),
            failed: default_signal_failed(),
        }
    }
}

fn default_signal_label() -> String {
    GPU_DRIVER_UPGRADE_STATE.to_owned()
}

fn default_signal_done() -> String {
    "upgrade-done".to_owned()
}

fn default_signal_failed() -> String {
    "upgrade-failed".to_owned()
}

/// How Nodes are grouped into waves. A wave holds whole failure domains only: a domain is never
/// split across waves, so a job that needs a domain whole is disrupted once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.failureDomain != 'label' || (has(self.domainLabel) && self.domainLabel != '')",
        "message": "failureDomain is label but no label is named; set domainLabel (a rack label, for instance)",
        "fieldPath": ".domainLabel",
    },
    {
        "rule": "self == oldSelf",
        "message": "the waves of a maintenance cannot change; create a new Maintenance",
    },
]))]
pub struct WavePolicy {
    /// `leafGroup` (the default: `fabbrica.io/leaf-group`), `scalableUnit`
    /// (`fabbrica.io/scalable-unit`), `nvlinkDomain` (`nvidia.com/gpu.clique`), `node`, or
    /// `label` (the label named by `domainLabel`, e.g. a rack label).
    #[serde(default)]
    pub failure_domain: FailureDomain,
    /// With `failureDomain: label`: the Node label whose value names the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 316))]
    pub domain_label: Option<String>,
}

/// What a wave never splits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureDomain {
    /// The Nodes cabled to one leaf switch per rail (`fabbrica.io/leaf-group`).
    #[default]
    LeafGroup,
    /// A scalable unit (`fabbrica.io/scalable-unit`).
    ScalableUnit,
    /// An NVLink domain (`nvidia.com/gpu.clique`, GB200 NVL72).
    NvlinkDomain,
    /// Each Node on its own.
    Node,
    /// The Node label named by `domainLabel`.
    Label,
}

/// What the operator observed and did of a Maintenance. The plan (waves and their Nodes) is made
/// once and kept here, with every Node's progress, so a restarted operator resumes from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the spec is valid and the plan made), Progressing and Paused.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// `Pending`, `Running`, `Paused`, `Succeeded`, `Cancelled` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What holds the maintenance, or what it does now, as a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Node label the waves were grouped by (none for `failureDomain: node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_label: Option<String>,
    /// The wave being worked on (from 0); absent before the plan and after the last wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<u32>,
    /// Nodes in the plan.
    #[serde(default)]
    pub nodes_total: u32,
    /// Nodes whose work is done and that are released.
    #[serde(default)]
    pub nodes_done: u32,
    /// Nodes that failed (timed out or reported failure); they stay cordoned.
    #[serde(default)]
    pub nodes_failed: u32,
    /// Per pool: its budget and how many of its Nodes were out of service at the last look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pool"]))]
    pub budgets: Vec<PoolBudget>,
    /// The waves, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveStatus>,
    /// Every Node of the plan and where it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub nodes: Vec<MaintenanceNode>,
}

/// A pool's disruption budget as the maintenance applies it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolBudget {
    /// Pool name.
    pub pool: String,
    /// Most Nodes of the pool out of service at once (`maxUnavailable` resolved; 1 when the pool
    /// declares none).
    pub max_unavailable: u32,
    /// Nodes of the pool NotReady, cordoned or quarantined at the last look, whoever did it.
    pub unavailable: u32,
}

/// One wave: whole failure domains, worked on together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    /// Position, from 0.
    pub index: u32,
    /// The failure domains of the wave (values of the domain label; a Node's name when it has none).
    pub domains: Vec<String>,
    /// `Pending`, `Running` or `Complete`.
    pub phase: String,
    /// Nodes in the wave.
    pub nodes: u32,
}

/// One Node of the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceNode {
    /// Node name.
    pub name: String,
    /// Its pool.
    pub pool: String,
    /// Its wave.
    pub wave: u32,
    /// `Pending`, `Cordoned` (tenants told, eviction after the notice), `Draining`, `Working`
    /// (the action runs), `Done`, `Failed`, `Skipped` (cancelled before it started).
    pub phase: String,
    /// When the Node was cordoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it entered its current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// With `reboot`: the boot ID when the reboot was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// What holds the Node (a PodDisruptionBudget refusing an eviction) or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
