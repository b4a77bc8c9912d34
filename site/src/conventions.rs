//! The conventions a blueprint's objects follow: the one GPU pool its Factory
//! declares, the node label that pool selects, and the fabric partition keys its
//! tenants are given. Validation, the objects and a new site's defaults all read
//! them here.

/// The one GPU pool a blueprint's Factory declares; notebook profiles name it.
/// (The node label fabbrica writes the pool into is `fabbrica_crds::labels::POOL`.)
pub const BLUEPRINT_POOL: &str = "gpu";

/// The node label the GPU Operator's feature discovery puts on GPU nodes; the pool selects it.
pub const GPU_NODE_LABEL: &str = "nvidia.com/gpu.present";

/// Partition keys tenants are given, one each, from the first of this range.
pub const FIRST_TENANT_KEY: u16 = 0x0101;

/// The range the Factory declares for tenant partitions.
pub const TENANT_KEYS: (u16, u16) = (0x0100, 0x01FF);

/// Tenants a blueprint can hold: one partition key each.
pub const MAX_TENANTS: usize = (TENANT_KEYS.1 - FIRST_TENANT_KEY + 1) as usize;

/// A partition key as the Factory and Workspace specs spell it: `0x0101`.
pub fn partition_key(key: u16) -> String {
    format!("0x{key:04X}")
}

/// The partition key of the tenant at `index` in the blueprint.
pub fn tenant_partition_key(index: usize) -> String {
    partition_key(FIRST_TENANT_KEY + index as u16)
}
