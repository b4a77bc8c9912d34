//! Condition types, reasons and Event reasons of every kind, in one place. The helpers that build
//! and merge conditions are in [`crate::reconcile::conditions`].

/// Condition types.
pub mod types {
    /// Everything the object declares is in place (every kind).
    pub const READY: &str = "Ready";
    /// Factory: every pool has its expected number of ready Nodes.
    pub const POOLS_READY: &str = "PoolsReady";
    /// Factory: every pool Node carries topology labels and the topology ConfigMap is written.
    pub const FABRIC_READY: &str = "FabricReady";
    /// Factory: one StorageClass per tier exists.
    pub const STORAGE_READY: &str = "StorageReady";
    /// Factory: the GPU Operator's device-plugin ConfigMap is written in its namespace.
    pub const DEVICE_PLUGIN_CONFIG: &str = "DevicePluginConfig";
    /// Factory: Multus NetworkAttachmentDefinitions, one per rail; informational, not part of Ready.
    pub const NETWORK_ATTACHMENTS: &str = "NetworkAttachments";
    /// Factory: the placement discovery labels show (Topograph's) agrees with the declared one;
    /// informational, not part of Ready.
    pub const FABRIC_MATCHES_DECLARATION: &str = "FabricMatchesDeclaration";
    /// Workspace: the namespace exists and belongs to it.
    pub const NAMESPACE_READY: &str = "NamespaceReady";
    /// Workspace: the ResourceQuota and LimitRange are applied.
    pub const QUOTA_READY: &str = "QuotaReady";
    /// Workspace: NetworkPolicies and the members' RoleBinding are applied.
    pub const ACCESS_READY: &str = "AccessReady";
    /// Workspace: Kueue's ResourceFlavors, ClusterQueue and LocalQueue are applied; informational,
    /// not part of Ready.
    pub const QUEUE_READY: &str = "QueueReady";
    /// Workspace: its allocation is open (True) or closed: not started, used up or ended (False);
    /// informational, not part of Ready.
    pub const ALLOCATION: &str = "Allocation";
    /// JupyterEnvironment: the environment fits the catalog and the workspace's quota.
    pub const ADMITTED: &str = "Admitted";
    /// JupyterEnvironment: the notebook server has a ready replica.
    pub const RUNNING: &str = "Running";
    /// JupyterEnvironment: a Maintenance is about to evict (or is evicting) the notebook's Pod.
    pub const EVICTION_NOTICE: &str = "EvictionNotice";
    /// Maintenance: Nodes are being worked through; False when paused, finished or refused.
    pub const PROGRESSING: &str = "Progressing";
}

/// Condition reasons (CamelCase, as Kubernetes expects).
pub mod reasons {
    /// The spec breaks a rule of the shared validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Every part is ready.
    pub const ALL_READY: &str = "AllReady";
    /// Some parts are not ready yet.
    pub const NOT_READY: &str = "NotReady";
    /// A reconcile failed; the message says where.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
    /// Factory: writing this part failed while the others were written; the message has the
    /// API server's answer.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Factory: the namespace this part goes in does not exist and is not the operator's to
    /// create (the GPU Operator's).
    pub const NAMESPACE_MISSING: &str = "NamespaceMissing";
    /// Factory: the device-plugin ConfigMap is written.
    pub const DEVICE_PLUGIN_CONFIG_APPLIED: &str = "DevicePluginConfigApplied";
    /// Factory: every pool has its expected ready Nodes.
    pub const POOLS_READY: &str = "PoolsReady";
    /// Factory: some pool has fewer ready Nodes than expected.
    pub const NODES_NOT_READY: &str = "NodesNotReady";
    /// Factory: some Nodes match more than one pool (or factory) and are left alone.
    pub const NODE_CONFLICT: &str = "NodeConflict";
    /// Factory: topology labels and ConfigMap are applied.
    pub const TOPOLOGY_APPLIED: &str = "TopologyApplied";
    /// Factory: some pool Nodes have no scalable unit.
    pub const TOPOLOGY_INCOMPLETE: &str = "TopologyIncomplete";
    /// Factory: every tier has its StorageClass.
    pub const STORAGE_CLASSES_APPLIED: &str = "StorageClassesApplied";
    /// Factory: one NetworkAttachmentDefinition per rail is applied.
    pub const ATTACHMENTS_APPLIED: &str = "AttachmentsApplied";
    /// Factory: every Node with discovered topology labels sits where it is declared.
    pub const FABRIC_MATCHES: &str = "FabricMatches";
    /// Factory: some Nodes' discovered leaf or unit contradicts the declaration.
    pub const FABRIC_DRIFT: &str = "FabricDrift";
    /// Factory: no Node carries discovered topology labels, so there is nothing to compare.
    pub const NOTHING_DISCOVERED: &str = "NothingDiscovered";
    /// Factory: the placement is read from the discovery labels (`source: discovered`).
    pub const PLACEMENT_DISCOVERED: &str = "PlacementDiscovered";
    /// Factory: the Multus NetworkAttachmentDefinition CRD is not served.
    pub const MULTUS_ABSENT: &str = "MultusAbsent";
    /// Workspace: the Factory it names does not exist.
    pub const FACTORY_MISSING: &str = "FactoryMissing";
    /// Workspace: the namespace exists and belongs to something else; it is left alone.
    pub const NAMESPACE_TAKEN: &str = "NamespaceTaken";
    /// Workspace: the namespace is applied.
    pub const NAMESPACE_APPLIED: &str = "NamespaceApplied";
    /// Workspace: the ResourceQuota and LimitRange are applied.
    pub const QUOTA_APPLIED: &str = "QuotaApplied";
    /// Workspace: NetworkPolicies and RoleBinding are applied.
    pub const ACCESS_APPLIED: &str = "AccessApplied";
    /// Workspace: Kueue objects are applied.
    pub const QUEUES_APPLIED: &str = "QueuesApplied";
    /// Workspace: Kueue's CRDs are not served.
    pub const KUEUE_ABSENT: &str = "KueueAbsent";
    /// Workspace: Kueue reports the ClusterQueue inactive (its message says why).
    pub const QUEUE_INACTIVE: &str = "QueueInactive";
    /// Workspace: nothing was built because an earlier step stopped.
    pub const NOT_APPLIED: &str = "NotApplied";
    /// Workspace: it is being deleted.
    pub const DELETING: &str = "Deleting";
    /// Workspace: no allocation; GPU use is metered, not limited.
    pub const UNLIMITED: &str = "Unlimited";
    /// Workspace: the allocation is open, under 80 % used.
    pub const ALLOCATION_OPEN: &str = "AllocationOpen";
    /// Workspace: 80 % or more of the allocation is used.
    pub const ALLOCATION_NEARLY_USED: &str = "AllocationNearlyUsed";
    /// Workspace: every granted GPU-hour is used.
    pub const ALLOCATION_EXHAUSTED: &str = "AllocationExhausted";
    /// Workspace: the allocation's start date is ahead.
    pub const ALLOCATION_NOT_STARTED: &str = "AllocationNotStarted";
    /// Workspace: the allocation's end date is past.
    pub const ALLOCATION_ENDED: &str = "AllocationEnded";
    /// JupyterEnvironment: it fits the catalog and the quota.
    pub const PROFILE_ADMITTED: &str = "ProfileAdmitted";
    /// JupyterEnvironment: its profile, image or mounts break the catalog or the quota.
    pub const PROFILE_REFUSED: &str = "ProfileRefused";
    /// JupyterEnvironment: no Workspace has its namespace.
    pub const WORKSPACE_MISSING: &str = "WorkspaceMissing";
    /// JupyterEnvironment: its workspace is not usable (invalid, deleting or without its Factory).
    pub const WORKSPACE_NOT_READY: &str = "WorkspaceNotReady";
    /// JupyterEnvironment: the StatefulSet, Service, volumes, Secret and NetworkPolicy are applied.
    pub const CHILDREN_APPLIED: &str = "ChildrenApplied";
    /// JupyterEnvironment: the notebook server has a ready replica.
    pub const REPLICA_READY: &str = "ReplicaReady";
    /// JupyterEnvironment: the notebook server has no ready replica yet.
    pub const REPLICA_NOT_READY: &str = "ReplicaNotReady";
    /// JupyterEnvironment: its Node is taken out of service by a Maintenance.
    pub const NODE_MAINTENANCE: &str = "NodeMaintenance";
    /// Maintenance: no Node of the targeted pools matches; nothing is planned yet.
    pub const NO_NODES: &str = "NoNodes";
    /// Maintenance: the plan is made (waves of whole failure domains).
    pub const PLANNED: &str = "Planned";
    /// Maintenance: Nodes are being worked through.
    pub const IN_PROGRESS: &str = "InProgress";
    /// Maintenance: paused by `spec.paused`.
    pub const PAUSED_BY_SPEC: &str = "PausedBySpec";
    /// Maintenance: as many Nodes failed as `spec.failureThreshold`; it paused itself.
    pub const FAILURE_THRESHOLD: &str = "FailureThreshold";
    /// Maintenance: every Node is done.
    pub const MAINTENANCE_COMPLETE: &str = "MaintenanceComplete";
    /// Maintenance: every Node finished and some failed.
    pub const NODES_FAILED: &str = "NodesFailed";
    /// Maintenance: cancelled by `spec.cancel`.
    pub const MAINTENANCE_CANCELLED: &str = "MaintenanceCancelled";
}

/// Event reasons.
pub mod events {
    /// The spec is invalid; nothing was changed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A reconcile failed.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
    /// Factory: it became ready.
    pub const BECAME_READY: &str = "Ready";
    /// Factory: it stopped being ready.
    pub const BECAME_NOT_READY: &str = "NotReady";
    /// Node: quarantined (validation failed, or GPUs missing).
    pub const QUARANTINED: &str = "Quarantined";
    /// Node: passed its validation and left quarantine.
    pub const RETURNED: &str = "ReturnedFromQuarantine";
    /// Node: passed its validation.
    pub const VALIDATED: &str = "Validated";
    /// Factory: Node labels and taints were removed on deletion.
    pub const NODES_RELEASED: &str = "NodesReleased";
    /// JupyterEnvironment: it was refused; nothing was created.
    pub const PROFILE_REFUSED: &str = "ProfileRefused";
    /// Workspace: its environments were deleted before its namespace.
    pub const ENVIRONMENTS_DELETED: &str = "EnvironmentsDeleted";
    /// Workspace: the namespace belongs to something else.
    pub const NAMESPACE_TAKEN: &str = "NamespaceTaken";
    /// Workspace: 80 % of the allocation is used.
    pub const ALLOCATION_NEARLY_USED: &str = "AllocationNearlyUsed";
    /// Workspace: the allocation closed (used up, ended or not started); new GPU work is refused.
    pub const ALLOCATION_CLOSED: &str = "AllocationClosed";
    /// Workspace: the allocation opened again (budget raised or period extended).
    pub const ALLOCATION_REOPENED: &str = "AllocationReopened";
    /// Workspace: its notebooks were scaled to zero after the allocation closed.
    pub const NOTEBOOKS_STOPPED: &str = "NotebooksStopped";
}
