//! Condition types, reasons and Event reasons, in one place.

/// Condition types.
pub mod types {
    /// Everything the Factory declares is in place and its pools are ready.
    pub const READY: &str = "Ready";
    /// Every pool has its expected number of ready Nodes.
    pub const POOLS_READY: &str = "PoolsReady";
    /// Every pool Node carries topology labels and the topology ConfigMap is written.
    pub const FABRIC_READY: &str = "FabricReady";
    /// One StorageClass per tier exists.
    pub const STORAGE_READY: &str = "StorageReady";
    /// Multus NetworkAttachmentDefinitions, one per rail; informational, not part of Ready.
    pub const NETWORK_ATTACHMENTS: &str = "NetworkAttachments";
}

/// Condition reasons (CamelCase, as Kubernetes expects).
pub mod reasons {
    /// The spec breaks a rule of the shared validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Every part is ready.
    pub const ALL_READY: &str = "AllReady";
    /// Some parts are not ready yet.
    pub const NOT_READY: &str = "NotReady";
    /// Every pool has its expected ready Nodes.
    pub const POOLS_READY: &str = "PoolsReady";
    /// Some pool has fewer ready Nodes than expected.
    pub const NODES_NOT_READY: &str = "NodesNotReady";
    /// Some Nodes match more than one pool (or factory) and are left alone.
    pub const NODE_CONFLICT: &str = "NodeConflict";
    /// Topology labels and ConfigMap are applied.
    pub const TOPOLOGY_APPLIED: &str = "TopologyApplied";
    /// Some pool Nodes have no scalable unit.
    pub const TOPOLOGY_INCOMPLETE: &str = "TopologyIncomplete";
    /// Every tier has its StorageClass.
    pub const STORAGE_CLASSES_APPLIED: &str = "StorageClassesApplied";
    /// One NetworkAttachmentDefinition per rail is applied.
    pub const ATTACHMENTS_APPLIED: &str = "AttachmentsApplied";
    /// The Multus NetworkAttachmentDefinition CRD is not served.
    pub const MULTUS_ABSENT: &str = "MultusAbsent";
    /// A reconcile failed; the message says where.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
}

/// Event reasons.
pub mod events {
    /// The Factory became ready.
    pub const BECAME_READY: &str = "Ready";
    /// The Factory stopped being ready.
    pub const BECAME_NOT_READY: &str = "NotReady";
    /// The spec is invalid; nothing was changed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A reconcile failed.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
    /// Node labels and taints were removed on deletion.
    pub const NODES_RELEASED: &str = "NodesReleased";
}
