//! `Factory`: one AI Factory or Gigafactory site, declared.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, GpuSystem, conditions_schema};

/// A DNS label: lower-case letters, digits and `-`, 1 to 63 characters.
pub(crate) const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// An InfiniBand partition key written as four hex digits (`0x0101`).
pub(crate) const PARTITION_KEY: &str = r"^0x[0-9a-fA-F]{4}$";

/// A Factory declares one AI Factory or Gigafactory site: its GPU node pools,
/// its compute fabric, its storage tiers and the notebook catalog its tenants
/// pick from. The operator labels and taints the pools' Nodes, writes the fabric
/// topology and creates one StorageClass per tier.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fabbrica.io",
    version = "v1alpha1",
    kind = "Factory",
    doc = "A Factory declares one AI Factory or Gigafactory site: GPU pools, fabric, storage tiers and notebook catalog.",
    plural = "factories",
    shortname = "fab",
    category = "fabbrica",
    status = "FactoryStatus",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site.name"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.site.tier"),
    printcolumn(name = "Pools", type_ = "integer", json_path = ".status.poolCount"),
    printcolumn(
        name = "GPUs-Ready",
        type_ = "integer",
        json_path = ".status.gpusReady"
    ),
    printcolumn(
        name = "GPUs-Expected",
        type_ = "integer",
        json_path = ".status.gpusExpected"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FactorySpec {
    /// The site this Factory describes.
    pub site: Site,
    /// GPU node pools: groups of identical GPU systems selected by node labels; at most 64.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub gpu_pools: Vec<GpuPool>,
    /// The compute fabric (east-west GPU traffic) connecting the pools.
    pub fabric: Fabric,
    /// Storage tiers; each becomes a StorageClass named `<factory>-<tier>`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub storage_tiers: Vec<StorageTier>,
    /// Notebook images and profiles that tenants may choose for JupyterEnvironments.
    #[serde(default)]
    pub notebooks: NotebookCatalog,
    /// Access modes under which this site grants GPU-hour allocations (`spec.allocation.mode`
    /// of its workspaces); none means the EuroHPC modes of fabbrica's catalog (`playground`,
    /// `fast-lane`, `large-scale`, `science`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub access_modes: Vec<super::AccessMode>,
}

/// Where the factory is and which kind of site it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// Site name, a DNS label (`it4lia`).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub name: String,
    /// ISO 3166-1 alpha-2 country code (`IT`, `DE`, `FI`).
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country: String,
    /// `aiFactory` (about 1,000 to 25,000 GPUs) or `gigafactory` (about 100,000 accelerators).
    pub tier: SiteTier,
}

/// The EuroHPC site class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "camelCase")]
pub enum SiteTier {
    /// An AI Factory: about 1,000 to 25,000 GPUs.
    #[cfg_attr(feature = "clap", value(name = "aiFactory", alias = "ai-factory"))]
    AiFactory,
    /// An AI Gigafactory: about 100,000 accelerators.
    #[cfg_attr(feature = "clap", value(name = "gigafactory"))]
    Gigafactory,
}

/// A group of identical GPU systems, selected by node labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuPool {
    /// Pool name, a DNS label, unique in the Factory; Nodes get the label `fabbrica.io/pool=<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub name: String,
    /// Labels a Node must carry to belong to this pool (all must match).
    #[schemars(extend("minProperties" = 1))]
    pub node_selector: BTreeMap<String, String>,
    /// GPU system model, from the catalog: `dgx-h100`, `dgx-h200`, `dgx-b200` or `gb200-nvl72`.
    pub system: GpuSystem,
    /// GPUs per node; defaults to the system's (8 for DGX, 4 for a GB200 NVL72 tray).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub gpus_per_node: Option<u32>,
    /// Number of nodes the pool is built with; the pool is ready when this many are ready.
    #[schemars(range(min = 1))]
    pub expected_nodes: u32,
    /// How GPUs are shared between workloads; whole GPUs when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<GpuSharing>,
    /// Taints put on every Node of the pool, so only workloads that tolerate them land there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<PoolTaint>,
    /// Maintenance policy for the pool's Nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenancePolicy>,
    /// Health validation of the pool's Nodes (`{}` for NVIDIA's DCGM diagnostics): a Node takes
    /// tenants only once its validation Job passed, and a Node that fails it, or that reports
    /// fewer GPUs than its system has, is quarantined. Absent: Nodes are not validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<super::NodeValidation>,
}

/// GPU sharing, following the NVIDIA GPU Operator's conventions. Set `mig` or `timeSlicing`, not both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.mig) && has(self.timeSlicing))",
    "message": "mig and timeSlicing are both set; a pool shares its GPUs one way: set one of them",
}]))]
pub struct GpuSharing {
    /// Partition every GPU with Multi-Instance GPU into instances of one profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<MigSharing>,
    /// Oversubscribe every GPU by time-slicing it between several workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_slicing: Option<TimeSlicing>,
}

/// A single MIG profile applied to every GPU of the pool (the GPU Operator's `all-<profile>` layout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigSharing {
    /// MIG profile the system's GPU supports, e.g. `1g.10gb` or `3g.40gb` on an H100 80GB.
    #[schemars(regex(pattern = r"^[1-7]g\.[0-9]+gb$"))]
    pub profile: String,
}

/// Time-slicing: each GPU is advertised as several `nvidia.com/gpu` replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeSlicing {
    /// How many workloads share one GPU (2 to 48).
    #[schemars(range(min = 2, max = 48))]
    pub replicas: u32,
}

/// A taint for every Node of a pool.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct PoolTaint {
    /// Taint key, e.g. `nvidia.com/gpu`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
    /// Taint value; may be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: TaintEffect,
}

/// What a taint does to Pods that do not tolerate it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum TaintEffect {
    /// New Pods are not scheduled on the Node.
    NoSchedule,
    /// The scheduler avoids the Node where it can.
    PreferNoSchedule,
    /// Running Pods are evicted, new ones are not scheduled.
    NoExecute,
}

impl TaintEffect {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        }
    }
}

/// How many of a pool's Nodes may be down for maintenance at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "type(self.maxUnavailable) == int || self.maxUnavailable.matches('^(100|[1-9]?[0-9])%$')",
    "message": "neither a node count nor a percentage; valid: an integer or \"0%\" to \"100%\"",
    "fieldPath": ".maxUnavailable",
}]))]
pub struct MaintenancePolicy {
    /// A node count (`2`) or a percentage of the pool (`"10%"`).
    #[schemars(extend("maxLength" = 4))]
    pub max_unavailable: IntOrString,
}

/// The compute fabric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fabric {
    /// `infiniband` or `roce`.
    #[serde(rename = "type")]
    pub type_: FabricType,
    /// Compute rails per node (one NIC and one leaf switch per rail); at most the system's compute NICs.
    #[schemars(range(min = 1, max = 16))]
    pub rails_per_node: u32,
    /// Port speed of each rail: `200G` (HDR), `400G` (NDR) or `800G` (XDR).
    pub link_speed: LinkSpeed,
    /// How Nodes map to scalable units and leaf switches.
    pub topology: Topology,
    /// The range of partition keys (InfiniBand PKeys, or RoCE VLAN-backed partitions) tenants draw from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_keys: Option<PartitionKeyRange>,
}

/// The fabric technology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FabricType {
    /// NVIDIA Quantum InfiniBand.
    Infiniband,
    /// RDMA over Converged Ethernet (Spectrum-X and the like).
    Roce,
}

/// Port speed of one rail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LinkSpeed {
    /// 200 Gb/s (InfiniBand HDR).
    #[serde(rename = "200G")]
    G200,
    /// 400 Gb/s (InfiniBand NDR).
    #[serde(rename = "400G")]
    G400,
    /// 800 Gb/s (InfiniBand XDR).
    #[serde(rename = "800G")]
    G800,
}

impl LinkSpeed {
    /// Gigabits per second.
    pub fn gbps(self) -> u32 {
        match self {
            Self::G200 => 200,
            Self::G400 => 400,
            Self::G800 => 800,
        }
    }
}

/// How Nodes map to scalable units (SUs) and leaf switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.source != 'declared' || (has(self.scalableUnits) && size(self.scalableUnits) > 0)",
        "message": "source is declared but no scalable units are listed; list them, or use source nodeOrder or nodeLabels",
        "fieldPath": ".scalableUnits",
    },
    {
        "rule": "self.source != 'nodeLabels' || (has(self.scalableUnitLabel) && self.scalableUnitLabel != '')",
        "message": "source is nodeLabels but no label is named; set the Node label that holds the scalable unit",
        "fieldPath": ".scalableUnitLabel",
    },
]))]
pub struct Topology {
    /// `declared` (the lists below), `nodeOrder` (Nodes sorted by name, `nodesPerScalableUnit`
    /// to a unit), `nodeLabels` (read the unit from an existing Node label) or `discovered`
    /// (unit and leaf from the discovery labels).
    pub source: TopologySource,
    /// Nodes per scalable unit; 32 in the DGX SuperPOD reference architectures.
    #[serde(default = "default_nodes_per_su")]
    #[schemars(range(min = 1, max = 1024))]
    pub nodes_per_scalable_unit: u32,
    /// With `source: declared`: the scalable units and the Nodes cabled to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub scalable_units: Vec<ScalableUnit>,
    /// With `source: nodeLabels`: the Node label holding the scalable unit's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalable_unit_label: Option<String>,
    /// Where Nodes carry their discovered leaf and spine (Topograph's labels by default). With
    /// any other source, Nodes whose discovered leaf or unit contradicts the declared one are
    /// named by the Factory's `FabricMatchesDeclaration` condition; with `source: discovered`
    /// the placement is read from these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<super::TopologyDiscovery>,
}

fn default_nodes_per_su() -> u32 {
    32
}

/// Where the topology comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TopologySource {
    /// Listed in `scalableUnits`.
    Declared,
    /// Derived: Nodes sorted by name, consecutive blocks of `nodesPerScalableUnit`.
    NodeOrder,
    /// Read from the Node label named by `scalableUnitLabel`.
    NodeLabels,
    /// Discovered: the unit and leaf a discovery tool (Topograph) wrote on each Node, read from
    /// the labels of `discovery`.
    Discovered,
}

/// One scalable unit: a block of nodes sharing one leaf switch per rail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalableUnit {
    /// Unit name, a DNS label (`su01`); leaf switches are named `<unit>-rail<N>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub name: String,
    /// Names of the Nodes cabled to this unit's leaves.
    pub nodes: Vec<String>,
}

/// An inclusive range of partition keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    // Keys are four hex digits (the pattern), so comparing them as lower-case text compares numbers.
    "rule": "self.first.lowerAscii() <= self.last.lowerAscii()",
    "message": "first is above last; valid: first <= last",
}]))]
pub struct PartitionKeyRange {
    /// First key, four hex digits (`0x0100`); keys run from `0x0001` to `0x7FFE`.
    #[schemars(length(max = 6), regex(pattern = PARTITION_KEY))]
    #[schemars(extend("x-kubernetes-validations" = [{
        // InfiniBand reserves 0x0000 and the default partition 0x7FFF.
        "rule": "self.lowerAscii() >= '0x0001' && self.lowerAscii() <= '0x7ffe'",
        "message": "outside the valid range; valid: 0x0001 to 0x7FFE",
    }]))]
    pub first: String,
    /// Last key, four hex digits (`0x01FF`), not below `first`.
    #[schemars(length(max = 6), regex(pattern = PARTITION_KEY))]
    #[schemars(extend("x-kubernetes-validations" = [{
        // InfiniBand reserves 0x0000 and the default partition 0x7FFF.
        "rule": "self.lowerAscii() >= '0x0001' && self.lowerAscii() <= '0x7ffe'",
        "message": "outside the valid range; valid: 0x0001 to 0x7FFE",
    }]))]
    pub last: String,
}

/// One storage tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageTier {
    /// Tier name, a DNS label, unique in the Factory; the StorageClass is `<factory>-<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub name: String,
    /// `scratch` (fast, per job), `project` (home and team data), `datasets` (shared, read-mostly) or `archive`.
    pub role: StorageRole,
    /// CSI provisioner of the StorageClass (e.g. `csi.weka.io`, `lustre.csi.hpe.com`).
    #[schemars(length(min = 1))]
    pub provisioner: String,
    /// Parameters passed to the provisioner.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// `Delete` (the default) or `Retain`: what happens to a volume when its claim is deleted.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
    /// Usable capacity of the tier (`2Pi`); workspace quotas draw from it.
    pub capacity: Quantity,
}

/// The purpose of a storage tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StorageRole {
    /// Fast, per-job scratch space.
    Scratch,
    /// Home directories and project data.
    Project,
    /// Shared datasets, mounted read-only into notebooks.
    Datasets,
    /// Capacity tier for long-term data.
    Archive,
}

/// What happens to a volume when its claim is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    /// The volume is deleted with its claim.
    #[default]
    Delete,
    /// The volume is kept for an administrator to reclaim.
    Retain,
}

impl ReclaimPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "Delete",
            Self::Retain => "Retain",
        }
    }
}

/// What tenants may run as notebooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookCatalog {
    /// Container images tenants may pick, by name.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub images: Vec<NotebookImage>,
    /// Resource profiles tenants may pick; a JupyterEnvironment must fit within one of them.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub profiles: Vec<NotebookProfile>,
}

/// A notebook image of the catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookImage {
    /// Name tenants refer to (`pytorch`).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub name: String,
    /// Image reference, pinned by tag or digest (`nvcr.io/nvidia/pytorch:24.10-py3`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// One line for people choosing an image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// The largest notebook allowed on a pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookProfile {
    /// Profile name (`h100-1g`).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub name: String,
    /// The GPU pool notebooks of this profile run on.
    pub pool: String,
    /// Most GPUs (or GPU slices, on a shared pool) a notebook of this profile may request.
    #[schemars(range(min = 0, max = 16))]
    pub gpus: u32,
    /// Most CPU a notebook of this profile may request (`16`).
    pub cpu: Quantity,
    /// Most memory a notebook of this profile may request (`128Gi`).
    pub memory: Quantity,
}

/// What the operator observed of a Factory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FactoryStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, PoolsReady, FabricReady and StorageReady; DevicePluginConfig, NetworkAttachments
    /// and FabricMatchesDeclaration inform.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// Number of GPU pools.
    #[serde(default)]
    pub pool_count: u32,
    /// Allocatable GPUs on ready Nodes, over all pools.
    #[serde(default)]
    pub gpus_ready: u64,
    /// GPUs the pools are built with: expected nodes times GPUs per node.
    #[serde(default)]
    pub gpus_expected: u64,
    /// One entry per pool.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub pools: Vec<PoolStatus>,
}

/// What the operator observed of one pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Nodes matching the pool's selector (and no other pool's).
    pub nodes_matched: u32,
    /// Matched Nodes whose Ready condition is True, neither quarantined nor awaiting validation.
    pub nodes_ready: u32,
    /// Nodes the pool is built with.
    pub nodes_expected: u32,
    /// Allocatable `nvidia.com/gpu` on ready Nodes.
    pub gpus_allocatable: u64,
    /// Physical GPUs on ready Nodes: each Node's allocatable `nvidia.com/gpu` divided by the
    /// pool's units per GPU (MIG instances, time-slicing replicas), at most its GPUs per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_ready: Option<u64>,
    /// Nodes that match this pool and another one; they are left alone until the selectors are fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicting_nodes: Vec<String>,
    /// Matched Nodes not validated yet (new, or back from maintenance); they take no tenants
    /// until they pass and do not count in `nodesReady`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nodes_validating: u32,
    /// Matched Nodes in quarantine; they do not count in `nodesReady`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nodes_quarantined: u32,
    /// The quarantined Nodes and why, sorted by name; at most 32 (`nodesQuarantined` counts all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub quarantined_nodes: Vec<super::QuarantinedNode>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}
