//! The rules of a Workspace: against its Factory and the workspaces before it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Problem, Problems, check_key, check_quantity, duplicates, listing, partition_key};
use crate::capacity::{gpus_per_node, pool_capacity, units_per_gpu};
use crate::v1alpha1::{FactorySpec, WorkspaceSpec};

/// The largest fair-sharing weight a workspace may have.
pub const MAX_FAIR_SHARING_WEIGHT: u32 = 1000;

/// Validates a Workspace against its Factory (when known) and the other workspaces.
///
/// `others` are the other Workspaces of the cluster (or the files at hand), by name.
pub fn validate_workspace(
    spec: &WorkspaceSpec,
    factory: Option<&FactorySpec>,
    others: &[(&str, &WorkspaceSpec)],
) -> Result<(), Problems> {
    let mut p = Vec::new();
    duplicates(
        spec.gpu_quota.iter().map(|q| q.pool.as_str()),
        |i| format!("spec.gpuQuota[{i}].pool"),
        "pool",
        &mut p,
    );
    duplicates(
        spec.storage_quota.iter().map(|q| q.tier.as_str()),
        |i| format!("spec.storageQuota[{i}].tier"),
        "tier",
        &mut p,
    );
    for (name, other) in others {
        if other.namespace == spec.namespace {
            p.push(Problem::new(
                "spec.namespace",
                format!("namespace {:?} is already the namespace of workspace {name:?}; each workspace needs its own", spec.namespace),
            ));
        }
    }
    for (i, q) in spec.gpu_quota.iter().enumerate() {
        if let Some(lending) = q.lending_limit
            && lending > q.gpus
        {
            p.push(Problem::new(
                format!("spec.gpuQuota[{i}].lendingLimit"),
                format!(
                    "lends {lending} GPUs but the workspace is granted {} on pool {:?}; valid: 0 to {}",
                    q.gpus, q.pool, q.gpus
                ),
            ));
        }
    }
    if let Some(weight) = spec.queue.as_ref().and_then(|q| q.fair_sharing_weight)
        && weight > MAX_FAIR_SHARING_WEIGHT
    {
        p.push(Problem::new(
            "spec.queue.fairSharingWeight",
            format!("{weight} is out of range; valid: 0 to {MAX_FAIR_SHARING_WEIGHT}"),
        ));
    }
    for (i, q) in spec.storage_quota.iter().enumerate() {
        check_quantity(
            &q.capacity.0,
            format!("spec.storageQuota[{i}].capacity"),
            &mut p,
        );
    }
    let key = spec
        .fabric_partition
        .as_ref()
        .and_then(|fp| check_key(&fp.key, "spec.fabricPartition.key", &mut p));
    if let Some(key) = key {
        for (name, other) in others {
            if other.factory == spec.factory
                && other
                    .fabric_partition
                    .as_ref()
                    .and_then(|fp| partition_key(&fp.key))
                    == Some(key)
            {
                p.push(Problem::new(
                    "spec.fabricPartition.key",
                    format!("partition key 0x{key:04X} is already used by workspace {name:?}; partitions isolate tenants and cannot be shared"),
                ));
            }
        }
    }
    if let Some(allocation) = &spec.allocation {
        super::allocation::check_allocation(allocation, &spec.factory, factory, &mut p);
    }
    if let Some(factory) = factory {
        let pools: BTreeMap<_, _> = factory
            .gpu_pools
            .iter()
            .map(|x| (x.name.as_str(), x))
            .collect();
        for (i, q) in spec.gpu_quota.iter().enumerate() {
            match pools.get(q.pool.as_str()) {
                None => p.push(Problem::new(
                    format!("spec.gpuQuota[{i}].pool"),
                    format!("no pool {:?} in factory {:?}; {}", q.pool, spec.factory, listing(pools.keys().copied())),
                )),
                Some(pool) if u64::from(q.gpus) > pool_capacity(pool) => p.push(Problem::new(
                    format!("spec.gpuQuota[{i}].gpus"),
                    format!(
                        "asks for {} GPUs but pool {:?} can never hold more than {} ({} nodes x {} GPUs x {} per GPU)",
                        q.gpus,
                        q.pool,
                        pool_capacity(pool),
                        pool.expected_nodes,
                        gpus_per_node(pool),
                        units_per_gpu(pool)
                    ),
                )),
                Some(pool)
                    if u64::from(q.gpus) + u64::from(q.borrowing_limit) > pool_capacity(pool) =>
                {
                    p.push(Problem::new(
                        format!("spec.gpuQuota[{i}].borrowingLimit"),
                        format!(
                            "{} granted plus {} borrowed GPUs exceed what pool {:?} can ever hold ({}); valid: 0 to {}",
                            q.gpus,
                            q.borrowing_limit,
                            q.pool,
                            pool_capacity(pool),
                            pool_capacity(pool).saturating_sub(u64::from(q.gpus))
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let tiers: BTreeSet<_> = factory
            .storage_tiers
            .iter()
            .map(|x| x.name.as_str())
            .collect();
        for (i, q) in spec.storage_quota.iter().enumerate() {
            if !tiers.contains(q.tier.as_str()) {
                p.push(Problem::new(
                    format!("spec.storageQuota[{i}].tier"),
                    format!(
                        "no storage tier {:?} in factory {:?}; {}",
                        q.tier,
                        spec.factory,
                        listing(tiers.iter().copied())
                    ),
                ));
            }
        }
        if let (Some(key), Some(range)) = (key, &factory.fabric.partition_keys)
            && let (Some(first), Some(last)) =
                (partition_key(&range.first), partition_key(&range.last))
            && !(first..=last).contains(&key)
        {
            p.push(Problem::new(
                "spec.fabricPartition.key",
                format!(
                    "partition key 0x{key:04X} is outside factory {:?}'s range; valid: {} to {}",
                    spec.factory, range.first, range.last
                ),
            ));
        }
    }
    Problems(p).into_result()
}
