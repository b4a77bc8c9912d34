//! `Workspace`: one tenant of a factory.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, conditions_schema};
use super::factory::{DNS_LABEL, PARTITION_KEY};

/// A Workspace onboards one tenant (a startup, an SME, a research group, a
/// public body) onto a Factory: its own namespace, its members, its GPU and
/// storage quotas and its fabric partition.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "fabbrica.io",
    version = "v1alpha1",
    kind = "Workspace",
    doc = "A Workspace onboards one tenant onto a Factory: namespace, members, GPU and storage quotas, fabric partition.",
    shortname = "ws",
    category = "fabbrica",
    status = "WorkspaceStatus",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant.name"),
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.tenant.kind"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(name = "GPUs-Used", type_ = "integer", json_path = ".status.gpusUsed"),
    printcolumn(
        name = "GPUs-Granted",
        type_ = "integer",
        json_path = ".status.gpusGranted"
    ),
    printcolumn(
        name = "GPU-h-Used",
        type_ = "number",
        json_path = ".status.allocation.usedGpuHours"
    ),
    printcolumn(
        name = "GPU-h-Granted",
        type_ = "number",
        json_path = ".status.allocation.grantedGpuHours"
    ),
    printcolumn(name = "Ends", type_ = "string", json_path = ".spec.allocation.end"),
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
pub struct WorkspaceSpec {
    /// Name of the Factory this workspace draws its GPUs and storage from.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub factory: String,
    /// Who the tenant is.
    pub tenant: Tenant,
    /// People and groups who get the `edit` role in the workspace's namespace.
    #[serde(default)]
    pub members: Vec<Member>,
    /// The tenant's namespace, created and owned by the operator; unique over all workspaces.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL))]
    pub namespace: String,
    /// GPUs the tenant may request at once, per pool; one entry per pool, so at most 64.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pool"]))]
    pub gpu_quota: Vec<GpuQuota>,
    /// Storage the tenant may claim, per tier.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["tier"]))]
    pub storage_quota: Vec<StorageQuota>,
    /// The tenant's partition of the compute fabric; none means the default partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric_partition: Option<FabricPartition>,
    /// How the tenant's Kueue ClusterQueue shares the Factory's cohort: its fair-sharing weight
    /// and what it may preempt. Borrowing and lending are per pool, in `gpuQuota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueuePolicy>,
    /// GPU-hours granted for a period under one of the site's access modes; without one the
    /// workspace's GPU use is metered but not limited in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<super::Allocation>,
}

/// The tenant behind a workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// The tenant's name as people write it (`Aurora Robotics S.r.l.`).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `startup`, `sme`, `research` or `publicBody`.
    pub kind: TenantKind,
}

/// The kind of organisation a tenant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TenantKind {
    /// A startup.
    Startup,
    /// A small or medium-sized enterprise.
    Sme,
    /// A university or research group.
    Research,
    /// A public administration or agency.
    PublicBody,
}

/// A person or group given access to the workspace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// `User` or `Group`, as the cluster's authentication names them.
    #[serde(default)]
    pub kind: MemberKind,
    /// User or group name (`alice@aurora.example`).
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A member's subject kind.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum MemberKind {
    /// A user.
    #[default]
    User,
    /// A group.
    Group,
}

impl MemberKind {
    /// The RBAC subject kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }
}

/// GPUs granted on one pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.lendingLimit) || self.lendingLimit <= self.gpus",
    "message": "lendingLimit exceeds gpus; valid: 0 to gpus (a workspace lends only what it is granted)",
    "fieldPath": ".lendingLimit",
}]))]
pub struct GpuQuota {
    /// A pool of the Factory.
    pub pool: String,
    /// GPUs (or GPU slices, on a shared pool) the tenant may request at once: its nominal quota
    /// in Kueue, which no other workspace's preemption ever takes away.
    #[schemars(range(min = 0))]
    pub gpus: u32,
    /// GPUs the tenant may borrow on this pool beyond `gpus`, from what the Factory's other
    /// workspaces (Kueue's cohort, named like the Factory) lend and do not use; borrowed GPUs
    /// are given back when their owner needs them. 0 (the default): never beyond `gpus`.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub borrowing_limit: u32,
    /// GPUs of `gpus` the other workspaces of the Factory may borrow while this one does not
    /// use them, at most `gpus`; unset: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub lending_limit: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How a workspace's queue shares the Factory's cohort.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuePolicy {
    /// The workspace's weight in the cohort's fair sharing (Kueue's `fairSharing.weight`): of
    /// what is free to borrow, a workspace of weight 2 gets twice the share of one of weight 1;
    /// 0 borrows last and is preempted first. Unset: 1. At most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub fair_sharing_weight: Option<u32>,
    /// What the tenant's pending workloads may preempt to get back GPUs of their own `gpus`
    /// that other workspaces borrowed (Kueue's `reclaimWithinCohort`): `Any` (the default: a
    /// grant is always given back), `LowerPriority`, or `Never`. Only borrowed GPUs are ever
    /// reclaimed: work of another tenant within its own `gpus` is never preempted (Kueue's
    /// `borrowWithinCohort` is always `Never`).
    #[serde(default)]
    pub reclaim_within_cohort: CohortReclaim,
    /// What a pending workload may preempt among the tenant's own admitted workloads (Kueue's
    /// `withinClusterQueue`): `Never` (the default), `LowerPriority`, or
    /// `LowerOrNewerEqualPriority`.
    #[serde(default)]
    pub within_workspace: WorkspacePreemption,
}

/// Which borrowing workloads of other workspaces a pending workload may preempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CohortReclaim {
    /// Any workload that borrows the tenant's GPUs.
    #[default]
    Any,
    /// Only those of lower priority.
    LowerPriority,
    /// None: the tenant waits until borrowed GPUs are given back.
    Never,
}

impl CohortReclaim {
    /// Kueue's name of the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "Any",
            Self::LowerPriority => "LowerPriority",
            Self::Never => "Never",
        }
    }
}

/// Which of the tenant's own workloads a pending one may preempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkspacePreemption {
    /// None.
    #[default]
    Never,
    /// Those of lower priority.
    LowerPriority,
    /// Those of lower priority, or of equal priority admitted later.
    LowerOrNewerEqualPriority,
}

impl WorkspacePreemption {
    /// Kueue's name of the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "Never",
            Self::LowerPriority => "LowerPriority",
            Self::LowerOrNewerEqualPriority => "LowerOrNewerEqualPriority",
        }
    }
}

/// Storage granted on one tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageQuota {
    /// A storage tier of the Factory.
    pub tier: String,
    /// Total capacity the tenant's claims on this tier may request (`50Ti`).
    pub capacity: Quantity,
}

/// The tenant's fabric partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FabricPartition {
    /// Partition key, four hex digits inside the Factory's `fabric.partitionKeys` range; unique over all workspaces.
    #[schemars(length(max = 6), regex(pattern = PARTITION_KEY))]
    #[schemars(extend("x-kubernetes-validations" = [{
        // InfiniBand reserves 0x0000 and the default partition 0x7FFF.
        "rule": "self.lowerAscii() >= '0x0001' && self.lowerAscii() <= '0x7ffe'",
        "message": "outside the valid range; valid: 0x0001 to 0x7FFE",
    }]))]
    pub key: String,
}

/// What the operator observed of a Workspace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, NamespaceReady, QuotaReady, AccessReady and QueueReady.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
    /// GPUs requested by the tenant's running workloads, over all pools.
    #[serde(default)]
    pub gpus_used: u64,
    /// GPUs granted, over all pools.
    #[serde(default)]
    pub gpus_granted: u64,
    /// Quota used and granted per resource, as the namespace's ResourceQuota reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["resource"]))]
    pub quota: Vec<QuotaUsage>,
    /// The workspace's Kueue queue as Kueue reports it (its ClusterQueue's status); absent
    /// without Kueue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
    /// GPU-hours used (metered from the namespace's Pods) and granted, and the allocation's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<super::AllocationStatus>,
}

/// Workloads and GPUs of a workspace's queue, as Kueue reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Workloads admitted (their Pods may run).
    pub admitted_workloads: u64,
    /// Workloads waiting for quota or room.
    pub pending_workloads: u64,
    /// GPUs in use per pool by admitted workloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pool"]))]
    pub pools: Vec<PoolQueueUsage>,
}

/// GPUs a workspace's admitted workloads use on one pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolQueueUsage {
    /// The pool.
    pub pool: String,
    /// GPUs in use, borrowed ones included.
    pub gpus_in_use: u64,
    /// GPUs of those borrowed from other workspaces.
    pub gpus_borrowed: u64,
}

/// Use of one quota'd resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUsage {
    /// The ResourceQuota resource name.
    pub resource: String,
    /// Amount in use.
    pub used: String,
    /// Amount granted.
    pub granted: String,
}
