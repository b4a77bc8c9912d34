//! Validation of specs beyond what the CRD schema can say (Kubernetes 1.20 has no
//! CEL rules): rules across fields, across objects, and against the catalog.
//! Pure: every problem is returned at once, each with its field path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::catalog;
use crate::quantity;
use crate::v1alpha1::{
    FactorySpec, GpuPool, JupyterEnvironmentSpec, TopologySource, WorkspaceSpec,
};

/// Partition keys tenants may use: 0x0000 is invalid and 0x7FFF is the default partition.
pub const PARTITION_KEYS: std::ops::RangeInclusive<u16> = 0x0001..=0x7FFE;

/// One thing wrong with a spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// Field path from the object's root (`spec.gpuPools[1].sharing.mig.profile`).
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of one object, as an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    fn into_result(self) -> Result<(), Problems> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// Parses a partition key written as `0x` and four hex digits.
pub fn partition_key(text: &str) -> Option<u16> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if digits.len() != 4 {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

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

fn duplicates<'a>(
    names: impl IntoIterator<Item = &'a str>,
    path: impl Fn(usize) -> String,
    what: &str,
    problems: &mut Vec<Problem>,
) {
    let mut seen = BTreeMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Some(first) = seen.insert(name, i) {
            problems.push(Problem::new(
                path(i),
                format!(
                    "duplicate {what} {name:?} (first at index {first}); {what}s must be unique"
                ),
            ));
            seen.insert(name, first);
        }
    }
}

fn listing<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<_> = names.into_iter().collect();
    if names.is_empty() {
        "none are declared".to_owned()
    } else {
        format!("valid: {}", names.join(", "))
    }
}

/// Validates a Factory spec on its own.
pub fn validate_factory(spec: &FactorySpec) -> Result<(), Problems> {
    let mut p = Vec::new();
    duplicates(
        spec.gpu_pools.iter().map(|x| x.name.as_str()),
        |i| format!("spec.gpuPools[{i}].name"),
        "pool name",
        &mut p,
    );
    duplicates(
        spec.storage_tiers.iter().map(|x| x.name.as_str()),
        |i| format!("spec.storageTiers[{i}].name"),
        "tier name",
        &mut p,
    );
    for (i, pool) in spec.gpu_pools.iter().enumerate() {
        validate_pool(i, pool, &mut p);
    }
    if let Some((i, pool, rails)) = spec
        .gpu_pools
        .iter()
        .enumerate()
        .map(|(i, pool)| (i, pool, catalog::system(pool.system).compute_rails))
        .find(|(_, _, rails)| spec.fabric.rails_per_node > *rails)
    {
        p.push(Problem::new(
            "spec.fabric.railsPerNode",
            format!(
                "{} rails per node, but pool {:?} (spec.gpuPools[{i}], {}) has only {rails} compute NICs per node; valid: 1 to {rails}",
                spec.fabric.rails_per_node, pool.name, pool.system
            ),
        ));
    }
    let topology = &spec.fabric.topology;
    match topology.source {
        TopologySource::Declared if topology.scalable_units.is_empty() => p.push(Problem::new(
            "spec.fabric.topology.scalableUnits",
            "source is declared but no scalable units are listed; list them, or use source nodeOrder or nodeLabels",
        )),
        TopologySource::NodeLabels if topology.scalable_unit_label.as_deref().unwrap_or("").is_empty() => {
            p.push(Problem::new(
                "spec.fabric.topology.scalableUnitLabel",
                "source is nodeLabels but no label is named; set the Node label that holds the scalable unit",
            ))
        }
        _ => {}
    }
    duplicates(
        topology.scalable_units.iter().map(|u| u.name.as_str()),
        |i| format!("spec.fabric.topology.scalableUnits[{i}].name"),
        "scalable unit name",
        &mut p,
    );
    let mut cabled = BTreeMap::new();
    for (i, unit) in topology.scalable_units.iter().enumerate() {
        for (j, node) in unit.nodes.iter().enumerate() {
            if let Some(other) = cabled.insert(node.as_str(), unit.name.as_str()) {
                p.push(Problem::new(
                    format!("spec.fabric.topology.scalableUnits[{i}].nodes[{j}]"),
                    format!("node {node:?} is already in scalable unit {other:?}; a node is cabled to one unit"),
                ));
            }
        }
    }
    if let Some(range) = &spec.fabric.partition_keys {
        let first = check_key(&range.first, "spec.fabric.partitionKeys.first", &mut p);
        let last = check_key(&range.last, "spec.fabric.partitionKeys.last", &mut p);
        if let (Some(first), Some(last)) = (first, last)
            && first > last
        {
            p.push(Problem::new(
                "spec.fabric.partitionKeys",
                format!(
                    "first {} is above last {}; valid: first <= last",
                    range.first, range.last
                ),
            ));
        }
    }
    let pools: BTreeSet<_> = spec.gpu_pools.iter().map(|x| x.name.as_str()).collect();
    let catalog = &spec.notebooks;
    duplicates(
        catalog.images.iter().map(|x| x.name.as_str()),
        |i| format!("spec.notebooks.images[{i}].name"),
        "image name",
        &mut p,
    );
    duplicates(
        catalog.profiles.iter().map(|x| x.name.as_str()),
        |i| format!("spec.notebooks.profiles[{i}].name"),
        "profile name",
        &mut p,
    );
    for (i, profile) in catalog.profiles.iter().enumerate() {
        if !pools.contains(profile.pool.as_str()) {
            p.push(Problem::new(
                format!("spec.notebooks.profiles[{i}].pool"),
                format!(
                    "no pool {:?} in this factory; {}",
                    profile.pool,
                    listing(pools.iter().copied())
                ),
            ));
        }
        check_quantity(
            &profile.cpu.0,
            format!("spec.notebooks.profiles[{i}].cpu"),
            &mut p,
        );
        check_quantity(
            &profile.memory.0,
            format!("spec.notebooks.profiles[{i}].memory"),
            &mut p,
        );
    }
    for (i, tier) in spec.storage_tiers.iter().enumerate() {
        check_quantity(
            &tier.capacity.0,
            format!("spec.storageTiers[{i}].capacity"),
            &mut p,
        );
    }
    Problems(p).into_result()
}

fn validate_pool(i: usize, pool: &GpuPool, p: &mut Vec<Problem>) {
    let system = catalog::system(pool.system);
    if pool.node_selector.is_empty() {
        p.push(Problem::new(
            format!("spec.gpuPools[{i}].nodeSelector"),
            "empty selector would take every Node; name at least one label",
        ));
    }
    if let Some(n) = pool.gpus_per_node
        && (n == 0 || n > system.gpus_per_node)
    {
        p.push(Problem::new(
            format!("spec.gpuPools[{i}].gpusPerNode"),
            format!(
                "{} has {} GPUs per node; valid: 1 to {}",
                system.id, system.gpus_per_node, system.gpus_per_node
            ),
        ));
    }
    if let Some(sharing) = &pool.sharing {
        if sharing.mig.is_some() && sharing.time_slicing.is_some() {
            p.push(Problem::new(
                format!("spec.gpuPools[{i}].sharing"),
                "mig and timeSlicing are both set; a pool shares its GPUs one way: set one of them",
            ));
        }
        if let Some(mig) = &sharing.mig
            && !system.mig_profiles.contains(&mig.profile)
        {
            p.push(Problem::new(
                format!("spec.gpuPools[{i}].sharing.mig.profile"),
                format!(
                    "{} ({}) does not support MIG profile {:?}; valid: {}",
                    system.id,
                    system.gpu,
                    mig.profile,
                    system.mig_profiles.join(", ")
                ),
            ));
        }
    }
    if let Some(IntOrString::String(text)) = pool.maintenance.as_ref().map(|m| &m.max_unavailable) {
        let percent = text.strip_suffix('%').and_then(|n| n.parse::<u32>().ok());
        if !matches!(percent, Some(0..=100)) {
            p.push(Problem::new(
                format!("spec.gpuPools[{i}].maintenance.maxUnavailable"),
                format!("{text:?} is neither a node count nor a percentage; valid: an integer or \"0%\" to \"100%\""),
            ));
        }
    }
}

fn check_key(text: &str, path: &str, p: &mut Vec<Problem>) -> Option<u16> {
    match partition_key(text) {
        Some(key) if PARTITION_KEYS.contains(&key) => Some(key),
        _ => {
            p.push(Problem::new(
                path,
                format!(
                    "partition key {text:?} is outside the valid range; valid: 0x0001 to 0x7FFE"
                ),
            ));
            None
        }
    }
}

fn check_quantity(text: &str, path: String, p: &mut Vec<Problem>) {
    if quantity::parse(text).is_none() {
        p.push(Problem::new(
            path,
            format!("{text:?} is not a quantity; valid: e.g. 8, 500m, 64Gi, 2Pi"),
        ));
    }
}

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

/// Validates a JupyterEnvironment against its Factory's catalog and its Workspace's quota.
pub fn validate_jupyter(
    spec: &JupyterEnvironmentSpec,
    factory: &FactorySpec,
    workspace: &WorkspaceSpec,
) -> Result<(), Problems> {
    let mut p = Vec::new();
    let catalog = &factory.notebooks;
    if !catalog.images.iter().any(|i| i.name == spec.image) {
        p.push(Problem::new(
            "spec.image",
            format!(
                "no image {:?} in the notebook catalog; {}",
                spec.image,
                listing(catalog.images.iter().map(|i| i.name.as_str()))
            ),
        ));
    }
    let profile = &spec.profile;
    let cpu = quantity::value(&profile.cpu);
    let memory = quantity::value(&profile.memory);
    if cpu.is_none() {
        check_quantity(&profile.cpu.0, "spec.profile.cpu".into(), &mut p);
    }
    if memory.is_none() {
        check_quantity(&profile.memory.0, "spec.profile.memory".into(), &mut p);
    }
    if !factory.gpu_pools.iter().any(|x| x.name == profile.pool) {
        p.push(Problem::new(
            "spec.profile.pool",
            format!(
                "no pool {:?} in factory {:?}; {}",
                profile.pool,
                workspace.factory,
                listing(factory.gpu_pools.iter().map(|x| x.name.as_str()))
            ),
        ));
    } else {
        let allowed: Vec<_> = catalog
            .profiles
            .iter()
            .filter(|c| c.pool == profile.pool)
            .collect();
        let fits = |c: &&crate::v1alpha1::NotebookProfile| {
            profile.gpus <= c.gpus
                && cpu
                    .zip(quantity::value(&c.cpu))
                    .is_some_and(|(a, b)| a <= b)
                && memory
                    .zip(quantity::value(&c.memory))
                    .is_some_and(|(a, b)| a <= b)
        };
        if allowed.is_empty() {
            p.push(Problem::new(
                "spec.profile.pool",
                format!(
                    "the notebook catalog allows no profile on pool {:?}; {}",
                    profile.pool,
                    {
                        let pools: BTreeSet<_> =
                            catalog.profiles.iter().map(|c| c.pool.as_str()).collect();
                        listing(pools)
                    }
                ),
            ));
        } else if cpu.is_some() && memory.is_some() && !allowed.iter().any(fits) {
            let field = if !allowed.iter().any(|c| profile.gpus <= c.gpus) {
                "gpus"
            } else if !allowed.iter().any(|c| {
                cpu.zip(quantity::value(&c.cpu))
                    .is_some_and(|(a, b)| a <= b)
            }) {
                "cpu"
            } else {
                "memory"
            };
            let offers: Vec<_> = allowed
                .iter()
                .map(|c| {
                    format!(
                        "{} (up to {} GPUs, {} CPU, {} memory)",
                        c.name, c.gpus, c.cpu.0, c.memory.0
                    )
                })
                .collect();
            p.push(Problem::new(
                format!("spec.profile.{field}"),
                format!(
                    "{} GPUs, {} CPU and {} memory on pool {:?} fit no catalog profile; valid: {}",
                    profile.gpus,
                    profile.cpu.0,
                    profile.memory.0,
                    profile.pool,
                    offers.join("; ")
                ),
            ));
        }
        if profile.gpus > 0 {
            let granted = workspace
                .gpu_quota
                .iter()
                .find(|q| q.pool == profile.pool)
                .map_or(0, |q| q.gpus);
            if profile.gpus > granted {
                p.push(Problem::new(
                    "spec.profile.gpus",
                    format!(
                        "{} GPUs on pool {:?} exceed the workspace's quota of {granted}; valid: at most {granted}",
                        profile.gpus, profile.pool
                    ),
                ));
            }
        }
    }
    let tiers: BTreeMap<_, _> = factory
        .storage_tiers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let quota_tiers: BTreeSet<_> = workspace
        .storage_quota
        .iter()
        .map(|q| q.tier.as_str())
        .collect();
    check_quantity(&spec.home.size.0, "spec.home.size".into(), &mut p);
    let mut check_tier = |tier: &str, path: String| {
        if !tiers.contains_key(tier) {
            p.push(Problem::new(
                &path,
                format!(
                    "no storage tier {tier:?} in factory {:?}; {}",
                    workspace.factory,
                    listing(tiers.keys().copied())
                ),
            ));
        } else if !quota_tiers.contains(tier) {
            p.push(Problem::new(
                &path,
                format!(
                    "the workspace has no storage quota on tier {tier:?}; {}",
                    listing(quota_tiers.iter().copied())
                ),
            ));
        }
    };
    check_tier(&spec.home.tier, "spec.home.tier".into());
    for (i, mount) in spec.mounts.iter().enumerate() {
        let role = tiers.get(mount.tier.as_str()).map(|t| t.role);
        // The datasets tier is shared read-only: a workspace reads it without a quota on it.
        if role != Some(crate::v1alpha1::StorageRole::Datasets) {
            check_tier(&mount.tier, format!("spec.mounts[{i}].tier"));
        }
    }
    duplicates(
        spec.mounts.iter().map(|m| m.mount_path.as_str()),
        |i| format!("spec.mounts[{i}].mountPath"),
        "mount path",
        &mut p,
    );
    Problems(p).into_result()
}

#[cfg(test)]
mod tests;
