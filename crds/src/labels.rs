//! Label and annotation keys that fabbrica writes and other tools read.

/// The Factory a Node, StorageClass or namespace belongs to.
pub const FACTORY: &str = "fabbrica.io/factory";
/// The GPU pool a Node belongs to.
pub const POOL: &str = "fabbrica.io/pool";
/// The storage tier a StorageClass serves.
pub const TIER: &str = "fabbrica.io/tier";
/// The Workspace a namespace belongs to.
pub const WORKSPACE: &str = "fabbrica.io/workspace";
/// The JupyterEnvironment a child (Pod, Service, home volume) belongs to.
pub const ENVIRONMENT: &str = "fabbrica.io/environment";
/// A Workspace's fabric partition key, on its namespace, where the fabric configuration reads it.
pub const PARTITION_KEY: &str = "fabbrica.io/partition-key";
/// The scalable unit a Node is cabled into.
pub const SCALABLE_UNIT: &str = "fabbrica.io/scalable-unit";
/// The leaf group (one leaf switch per rail) a Node is cabled to.
pub const LEAF_GROUP: &str = "fabbrica.io/leaf-group";
/// The NVLink domain of a Node: its NVIDIA GPU clique (`nvidia.com/gpu.clique`) on multi-node
/// NVLink (a GB200 NVL72 rack), the Node itself where NVLink stays inside it. Written where a
/// Factory has a pool with multi-node NVLink, as a level of its Kueue Topology.
pub const NVLINK_DOMAIN: &str = "fabbrica.io/nvlink-domain";
/// The NVLink clique NVIDIA's GPU feature discovery reports on multi-node NVLink trays.
pub const GPU_CLIQUE: &str = "nvidia.com/gpu.clique";
/// Topograph's labels of the same placement, so every topology-aware tool (KAI Scheduler,
/// Kueue, Slurm's Kubernetes bridge) reads one source. Its current schema: fabric tiers
/// counted from the Node up (tier 0 the leaf), and the accelerator (NVLink) domain.
pub const TOPOGRAPH_TIER_LEAF: &str = "fabric.topograph.run/tier-0";
/// Topograph's fabric tier above the leaf: fabbrica's scalable unit (its spine group).
pub const TOPOGRAPH_TIER_SPINE: &str = "fabric.topograph.run/tier-1";
/// Topograph's accelerator (NVLink) domain, on multi-node NVLink Nodes.
pub const TOPOGRAPH_ACCELERATOR_DOMAIN: &str = "accelerator.topograph.run/domain";
/// Topograph's earlier schema (`network.topology.nvidia.com/...`), which its releases up to
/// 0.3 write and tools built on them read: the leaf switch.
pub const TOPOLOGY_LEAF: &str = "network.topology.nvidia.com/leaf";
/// The earlier schema's spine.
pub const TOPOLOGY_SPINE: &str = "network.topology.nvidia.com/spine";
/// The earlier schema's accelerator (NVLink) domain.
pub const TOPOLOGY_ACCELERATOR: &str = "network.topology.nvidia.com/accelerator";
/// Compute rails of a Node.
pub const RAILS: &str = "fabbrica.io/rails";
/// The GPU Operator's device-plugin configuration selector.
pub const DEVICE_PLUGIN_CONFIG: &str = "nvidia.com/device-plugin.config";
/// The GPU Operator's MIG manager layout selector.
pub const MIG_CONFIG: &str = "nvidia.com/mig.config";
/// The extended resource of NVIDIA GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The standard managed-by label.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`] on everything the operator creates.
pub const MANAGER: &str = "fabbrica-operator";
/// Label on a Node a Maintenance cordoned: the Maintenance's name. Only a Node carrying it is
/// uncordoned by that Maintenance (a cordon someone else set stays), and a deleted Maintenance
/// finds the Nodes it holds by it.
pub const MAINTENANCE: &str = "fabbrica.io/maintenance";
/// The label that releases a Node drained for hardware work: its value is the Maintenance's name.
pub const MAINTENANCE_DONE: &str = "fabbrica.io/maintenance-done";
/// Annotation a `reboot` Maintenance writes on a drained Node (the time of the request), for a
/// reboot agent to act on.
pub const REBOOT_REQUESTED: &str = "fabbrica.io/reboot-requested";
/// The taint (NoSchedule) and label key of a quarantined Node; the label's value is the reason.
pub const QUARANTINE: &str = "fabbrica.io/quarantine";
/// Annotation on a JupyterEnvironment whose notebook Pod a Maintenance is about to evict: why,
/// as a sentence. Its status shows it as the condition `EvictionNotice` while it is there.
pub const EVICTION_NOTICE: &str = "fabbrica.io/eviction-notice";
/// Annotation beside [`EVICTION_NOTICE`]: the Node being taken out of service; the Maintenance
/// removes both when it releases that Node.
pub const EVICTION_NODE: &str = "fabbrica.io/eviction-node";
/// The label of a Node of a pool with validation: `passed` or `failed`; absent until its
/// validation ran (a new Node, a Node a Maintenance released), and removing it asks for a new
/// run. As a taint (NoSchedule, value `pending`) it keeps tenants off a Node that has not passed.
pub const VALIDATION: &str = "fabbrica.io/validation";
/// Annotation on a validation Job: the Node it validates.
pub const VALIDATION_NODE: &str = "fabbrica.io/node";
