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
    /// GPUs the tenant may request at once, per pool.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pool"]))]
    pub gpu_quota: Vec<GpuQuota>,
    /// Storage the tenant may claim, per tier.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["tier"]))]
    pub storage_quota: Vec<StorageQuota>,
    /// The tenant's partition of the compute fabric; none means the default partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fabric_partition: Option<FabricPartition>,
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
pub struct GpuQuota {
    /// A pool of the Factory.
    pub pool: String,
    /// GPUs (or GPU slices, on a shared pool) the tenant may request at once.
    #[schemars(range(min = 0))]
    pub gpus: u32,
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
    /// GPU-hours used (metered from the namespace's Pods) and granted, and the allocation's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<super::AllocationStatus>,
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
