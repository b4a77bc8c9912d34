//! Validation of a Workspace: the shared rules of `fabbrica-crds`, against its Factory and the
//! workspaces that came before it. Pure.

use fabbrica_crds::v1alpha1::{Factory, FactorySpec, Workspace, WorkspaceSpec};
use fabbrica_crds::validation::{Problem, Problems, validate_workspace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// A Workspace whose spec passed validation against its Factory; only these are built from.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedWorkspace {
    /// The Workspace's name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The controller owner reference its children carry.
    pub owner: OwnerReference,
    /// The validated spec.
    pub spec: WorkspaceSpec,
    /// The spec of its Factory.
    pub factory: FactorySpec,
    /// A (non-controller) owner reference to the Factory, for objects shared by its workspaces.
    pub factory_owner: OwnerReference,
}

/// Why a Workspace cannot be built.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// The spec breaks the shared rules; the problems carry field paths.
    Invalid(Problems),
    /// The Factory it names does not exist.
    FactoryMissing(String),
}

/// Whether `other` claimed its namespace and partition before `workspace`: older first, then by name.
fn came_before(other: &Workspace, workspace: &Workspace) -> bool {
    let key = |w: &Workspace| {
        (
            w.meta().creation_timestamp.as_ref().map(|t| t.0),
            w.name_any(),
        )
    };
    key(other) < key(workspace)
}

/// Validates `workspace` against `factory` and the other workspaces.
///
/// Only workspaces created earlier count as conflicts: a newcomer that takes an existing
/// workspace's namespace or partition key is refused, and the existing one keeps working.
pub fn validate(
    workspace: &Workspace,
    factory: Option<&Factory>,
    all: &[impl AsRef<Workspace>],
) -> Result<ValidatedWorkspace, Refusal> {
    let name = workspace.name_any();
    let others: Vec<(String, &WorkspaceSpec)> = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|o| o.name_any() != name && came_before(o, workspace))
        .map(|o| (o.name_any(), &o.spec))
        .collect();
    let others: Vec<(&str, &WorkspaceSpec)> =
        others.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    validate_workspace(&workspace.spec, factory.map(|f| &f.spec), &others)
        .map_err(Refusal::Invalid)?;
    let factory = factory.ok_or_else(|| Refusal::FactoryMissing(workspace.spec.factory.clone()))?;
    let missing = |what: &str| {
        Refusal::Invalid(Problems(vec![Problem {
            path: "metadata.uid".into(),
            message: format!("the {what} has no uid yet"),
        }]))
    };
    let owner = workspace
        .controller_owner_ref(&())
        .ok_or_else(|| missing("Workspace"))?;
    let factory_owner = factory.owner_ref(&()).ok_or_else(|| missing("Factory"))?;
    Ok(ValidatedWorkspace {
        name,
        generation: workspace.meta().generation,
        owner,
        spec: workspace.spec.clone(),
        factory: factory.spec.clone(),
        factory_owner,
    })
}
