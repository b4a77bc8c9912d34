//! The rules of a JupyterEnvironment: its Factory's catalog and its Workspace's quota.

use std::collections::{BTreeMap, BTreeSet};

use super::{Problem, Problems, check_quantity, duplicates, listing};
use crate::quantity;
use crate::v1alpha1::{FactorySpec, JupyterEnvironmentSpec, WorkspaceSpec};

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
