//! Validation: the shared rules of `fabbrica-crds` (against the Factory the Maintenance names),
//! and the facts a step needs: the targeted pools' budgets and the domain label.

use std::collections::BTreeMap;

use fabbrica_crds::v1alpha1::{FactorySpec, Maintenance, MaintenanceSpec};
use fabbrica_crds::validation::{Problems, max_unavailable, validate_maintenance};
use kube::ResourceExt;

use super::plan::domain_label;

/// A Maintenance whose spec passed validation against its Factory.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedMaintenance {
    /// The Maintenance's name.
    pub name: String,
    /// The validated spec.
    pub spec: MaintenanceSpec,
    /// The targeted pools and their budgets (`maintenance.maxUnavailable` resolved).
    pub budgets: BTreeMap<String, u32>,
    /// The Node label the waves group by; none for `failureDomain: node`.
    pub domain_label: Option<String>,
}

impl ValidatedMaintenance {
    /// The size of a wave: the smallest budget of the targeted pools, at least one Node.
    pub fn wave_size(&self) -> u32 {
        self.budgets.values().copied().min().unwrap_or(1).max(1)
    }
}

/// Validates a Maintenance against its Factory's spec; the problems carry field paths.
pub fn validate(
    maintenance: &Maintenance,
    factory: &FactorySpec,
) -> Result<ValidatedMaintenance, Problems> {
    let name = maintenance.name_any();
    let spec = &maintenance.spec;
    validate_maintenance(&name, spec, Some(factory))?;
    let budgets = factory
        .gpu_pools
        .iter()
        .filter(|p| spec.pools.is_empty() || spec.pools.contains(&p.name))
        .map(|p| (p.name.clone(), max_unavailable(p)))
        .collect();
    Ok(ValidatedMaintenance {
        name,
        spec: spec.clone(),
        budgets,
        domain_label: domain_label(&spec.waves),
    })
}
