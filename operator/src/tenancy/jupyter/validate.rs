//! Validation of a JupyterEnvironment against its Factory's catalog and its Workspace's quota,
//! by the shared rules of `fabbrica-crds`. Pure.

use fabbrica_crds::v1alpha1::{
    Factory, GpuPool, JupyterEnvironment, JupyterEnvironmentSpec, StorageTier, Workspace,
};
use fabbrica_crds::validation::{Problem, Problems, validate_jupyter, validate_object_name};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// A JupyterEnvironment admitted by the catalog and the quota, with what it resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedEnvironment {
    /// The environment's name.
    pub name: String,
    /// Its namespace, the workspace's.
    pub namespace: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The controller owner reference its children carry.
    pub owner: OwnerReference,
    /// The validated spec.
    pub spec: JupyterEnvironmentSpec,
    /// The Factory's name.
    pub factory: String,
    /// The image reference the catalog names.
    pub image: String,
    /// The pool it runs on.
    pub pool: GpuPool,
    /// The Factory's storage tiers.
    pub tiers: Vec<StorageTier>,
    /// Whether the workspace's allocation is closed and its notebooks stopped (scaled to zero).
    pub stopped: bool,
}

/// Validates `environment` against its workspace and factory; the problems carry field paths.
pub fn validate(
    environment: &JupyterEnvironment,
    workspace: &Workspace,
    factory: &Factory,
) -> Result<ValidatedEnvironment, Problems> {
    // The name also names the Service and the StatefulSet, which the API server checks only
    // when the operator writes them; refusing it here keeps the refusal on the environment.
    let named = validate_object_name("JupyterEnvironment", environment.metadata.name.as_deref());
    let rules = validate_jupyter(&environment.spec, &factory.spec, &workspace.spec);
    if named.is_err() || rules.is_err() {
        let problems = [named, rules].into_iter().filter_map(Result::err);
        return Err(Problems(problems.flat_map(|p| p.0).collect()));
    }
    let problem = |path: &str, message: &str| {
        Problems(vec![Problem {
            path: path.into(),
            message: message.into(),
        }])
    };
    let spec = &environment.spec;
    let image = factory
        .spec
        .notebooks
        .images
        .iter()
        .find(|i| i.name == spec.image);
    let pool = factory
        .spec
        .gpu_pools
        .iter()
        .find(|p| p.name == spec.profile.pool);
    // The shared rules guarantee both; a mismatch is reported rather than unwrapped.
    let (Some(image), Some(pool)) = (image, pool) else {
        return Err(problem(
            "spec",
            "the image or the pool is not in the factory",
        ));
    };
    let owner = environment
        .controller_owner_ref(&())
        .ok_or_else(|| problem("metadata.uid", "the JupyterEnvironment has no uid yet"))?;
    Ok(ValidatedEnvironment {
        name: environment.name_any(),
        namespace: workspace.spec.namespace.clone(),
        generation: environment.meta().generation,
        owner,
        spec: spec.clone(),
        factory: factory.name_any(),
        image: image.image.clone(),
        pool: pool.clone(),
        tiers: factory.spec.storage_tiers.clone(),
        stopped: workspace
            .status
            .as_ref()
            .and_then(|s| s.allocation.as_ref())
            .is_some_and(|a| a.notebooks_stopped),
    })
}
