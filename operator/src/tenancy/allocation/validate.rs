//! Validation of a workspace's allocation: the shared rules of `fabbrica-crds` (dates, pools, the
//! access mode's limits), restricted to `spec.allocation`; the rest of the spec is the Workspace
//! controller's to judge. Pure.

use fabbrica_crds::v1alpha1::{Allocation, FactorySpec, WorkspaceSpec};
use fabbrica_crds::validation::{Problems, validate_workspace};

/// The allocation of `spec` when it is valid against `factory`; `Ok(None)` without one; the
/// problems under `spec.allocation` otherwise.
pub fn validate<'a>(
    spec: &'a WorkspaceSpec,
    factory: Option<&FactorySpec>,
) -> Result<Option<&'a Allocation>, Problems> {
    let Some(allocation) = spec.allocation.as_ref() else {
        return Ok(None);
    };
    let problems: Vec<_> = match validate_workspace(spec, factory, &[]) {
        Ok(()) => Vec::new(),
        Err(Problems(all)) => all
            .into_iter()
            .filter(|p| p.path.starts_with("spec.allocation"))
            .collect(),
    };
    if problems.is_empty() {
        Ok(Some(allocation))
    } else {
        Err(Problems(problems))
    }
}
