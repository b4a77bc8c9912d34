//! Node health: the validation a pool declares, what its status reports of quarantined Nodes,
//! and where the fabric's discovered placement is read.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// NVIDIA's DCGM image (the one the GPU Operator deploys), which carries `nv-hostengine` and
/// `dcgmi`.
pub const DEFAULT_VALIDATION_IMAGE: &str = "nvcr.io/nvidia/cloud-native/dcgm:4.4.2-1-ubuntu22.04";
/// Starts a DCGM host engine in the Pod (it forks into the background), then runs the medium
/// diagnostic suite (level 2, about two minutes): deployment, PCIe, memory and NVLink checks.
pub const DEFAULT_VALIDATION_COMMAND: [&str; 3] = ["sh", "-c", "nv-hostengine && dcgmi diag -r 2"];
/// How long a validation run may take by default: 30 minutes.
pub const DEFAULT_VALIDATION_TIMEOUT: u32 = 1800;

/// Health validation of a pool's Nodes: a check run as a Job on each Node that has not passed it
/// yet (a new Node, a Node a Maintenance released, a Node whose validation label was removed).
/// A Node takes tenants' Pods only once it passed; a failing Node is quarantined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeValidation {
    /// Image of the check; NVIDIA's DCGM image by default.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^\S+$"))]
    pub image: String,
    /// Command of the check; it passes when it exits 0. By default DCGM's diagnostics level 2
    /// (`dcgmi diag -r 2`) after starting a host engine.
    #[serde(default = "default_command")]
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "size(self[0]) > 0",
        "message": "the first element is empty; valid: the program to run, then its arguments",
    }]))]
    pub command: Vec<String>,
    /// Seconds a run may take before it counts as failed (60 to 86400; 1800 by default).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 60, max = 86400))]
    pub timeout_seconds: u32,
    /// Labels on the validation Pods, e.g. for NetworkPolicies or cost attribution; keys under
    /// `fabbrica.io/` are the operator's.
    // Optional (nullable) rather than an empty map: a server-side apply that empties a map
    // leaves null behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
}

impl Default for NodeValidation {
    fn default() -> Self {
        Self {
            image: default_image(),
            command: default_command(),
            timeout_seconds: default_timeout(),
            pod_labels: None,
        }
    }
}

fn default_image() -> String {
    DEFAULT_VALIDATION_IMAGE.to_owned()
}

fn default_command() -> Vec<String> {
    DEFAULT_VALIDATION_COMMAND.map(str::to_owned).to_vec()
}

fn default_timeout() -> u32 {
    DEFAULT_VALIDATION_TIMEOUT
}

/// Why a Node is quarantined; the value of its `fabbrica.io/quarantine` label.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum QuarantineReason {
    /// Its validation Job failed (or ran out of time).
    #[serde(rename = "validation-failed")]
    ValidationFailed,
    /// It reports fewer allocatable GPUs than its system has: a GPU was lost to a fault.
    #[serde(rename = "gpus-missing")]
    GpusMissing,
}

impl QuarantineReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation-failed",
            Self::GpusMissing => "gpus-missing",
        }
    }

    /// The reason a label value names, if any.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::ValidationFailed, Self::GpusMissing]
            .into_iter()
            .find(|r| r.as_str() == value)
    }
}

/// A quarantined Node of a pool.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedNode {
    /// The Node.
    pub name: String,
    /// `validation-failed` or `gpus-missing`.
    pub reason: QuarantineReason,
}

/// Where Nodes carry their discovered place in the fabric (labels written by a discovery tool
/// such as NVIDIA's Topograph), compared with the declared placement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyDiscovery {
    /// Node label holding the discovered leaf switch; by default Topograph's
    /// `network.topology.nvidia.com/leaf`, else `fabric.topograph.run/tier-0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 317))]
    pub leaf_label: Option<String>,
    /// Node label holding the discovered spine (fabbrica's scalable unit); by default
    /// Topograph's `network.topology.nvidia.com/spine`, else `fabric.topograph.run/tier-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 317))]
    pub unit_label: Option<String>,
}
