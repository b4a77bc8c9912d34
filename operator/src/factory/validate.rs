//! Validation: the shared rules of `fabbrica-crds`, and the few facts a reconcile needs.

use fabbrica_crds::v1alpha1::{Factory, FactorySpec};
use fabbrica_crds::validation::{Problems, validate_factory};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// A Factory whose spec passed validation; only these are built from.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedFactory {
    /// The Factory's name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The controller owner reference children carry.
    pub owner: OwnerReference,
    /// The validated spec.
    pub spec: FactorySpec,
}

/// Validates a Factory; the problems carry field paths.
pub fn validate(factory: &Factory) -> Result<ValidatedFactory, Problems> {
    validate_factory(&factory.spec)?;
    let owner = factory.controller_owner_ref(&()).ok_or_else(|| {
        Problems(vec![fabbrica_crds::validation::Problem {
            path: "metadata.uid".into(),
            message: "the Factory has no uid yet".into(),
        }])
    })?;
    Ok(ValidatedFactory {
        name: factory.name_any(),
        generation: factory.meta().generation,
        owner,
        spec: factory.spec.clone(),
    })
}
