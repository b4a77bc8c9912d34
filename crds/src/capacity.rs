//! Capacity contracts: how many GPUs a pool's Nodes carry and how many `nvidia.com/gpu` units
//! each physical GPU advertises. The operator's status, the shared validation and
//! `fabbrica status` all count with these.

use crate::catalog;
use crate::v1alpha1::{GpuPool, WorkspaceSpec};

/// GPUs per node of a pool: the declared figure or the system's.
pub fn gpus_per_node(pool: &GpuPool) -> u32 {
    pool.gpus_per_node
        .unwrap_or_else(|| catalog::system(pool.system).gpus_per_node)
}

/// How many `nvidia.com/gpu` units one physical GPU of the pool advertises.
pub fn units_per_gpu(pool: &GpuPool) -> u32 {
    let Some(sharing) = &pool.sharing else {
        return 1;
    };
    if let Some(ts) = &sharing.time_slicing {
        return ts.replicas;
    }
    if let Some(mig) = &sharing.mig {
        // A7-slice GPU holds 7 1g, 3 2g, 2 3g, 1 4g or 1 7g instance.
        return match mig
            .profile
            .split('g')
            .next()
            .and_then(|g| g.parse::<u32>().ok())
        {
            Some(1) => 7,
            Some(2) => 3,
            Some(3) => 2,
            _ => 1,
        };
    }
    1
}

/// The most `nvidia.com/gpu` units a pool can ever offer: expected nodes, GPUs per node and sharing.
pub fn pool_capacity(pool: &GpuPool) -> u64 {
    u64::from(pool.expected_nodes) * u64::from(gpus_per_node(pool)) * u64::from(units_per_gpu(pool))
}

/// Physical GPUs ready in a pool, from the raw `nvidia.com/gpu` units its ready Nodes advertise:
/// shared slices divided back into GPUs, never more than the ready Nodes hold.
pub fn physical_gpus(pool: &GpuPool, allocatable: u64, nodes_ready: u32) -> u64 {
    let units = u64::from(units_per_gpu(pool)).max(1);
    (allocatable / units).min(u64::from(nodes_ready) * u64::from(gpus_per_node(pool)))
}

/// Physical GPUs a pool holds when all its expected Nodes are there.
pub fn gpus_expected(pool: &GpuPool) -> u64 {
    u64::from(pool.expected_nodes) * u64::from(gpus_per_node(pool))
}

/// Physical GPUs of one ready Node of a pool that advertises `allocatable` `nvidia.com/gpu` units.
pub fn node_gpus(pool: &GpuPool, allocatable: u64) -> u64 {
    let units = u64::from(units_per_gpu(pool)).max(1);
    (allocatable / units).min(u64::from(gpus_per_node(pool)))
}

/// GPUs a Workspace is granted over all pools.
pub fn gpus_granted(spec: &WorkspaceSpec) -> u64 {
    spec.gpu_quota.iter().map(|q| u64::from(q.gpus)).sum()
}
