//! The Workspace controller: fetch -> validate -> build -> apply -> status.
//!
//! [`validate`], [`build`] and [`status`] are pure; [`apply`] does the writes (discovery of Kueue
//! and the namespace's owner come before the build). A finalizer holds
//! the Workspace on deletion until the JupyterEnvironments in its namespace are gone; then the
//! garbage collector deletes the namespace (owned by the Workspace) and everything in it.

pub mod apply;
pub mod build;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use fabbrica_crds::v1alpha1::{Factory, JupyterEnvironment, Workspace, WorkspaceStatus};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use self::apply::NamespaceCheck;
use self::validate::Refusal;
use super::{Context, Result};
use crate::conditions::{events, reasons, types};
use crate::owners::cluster_owners;
use crate::reconcile::apply::delete;
use crate::reconcile::run::{run as run_controller, with_finalizer};
use crate::reconcile::status::patch_status;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "workspace";
/// The finalizer that deletes a workspace's JupyterEnvironments before its namespace goes.
pub const FINALIZER: &str = "fabbrica.io/environments";
/// How often a Workspace is reconciled with no trigger (quota use is read on each reconcile).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often a Workspace with Kueue queues is reconciled with no trigger: its status follows
/// the ClusterQueue's (workloads admitted and pending, GPUs in use), which no watch reports.
pub const QUEUE_RESYNC: Duration = Duration::from_secs(10);
/// How often a deleting Workspace checks whether its environments are gone.
pub const DELETION_POLL: Duration = Duration::from_secs(2);
/// How often a Workspace whose namespace is taken or terminating looks again.
pub const NAMESPACE_POLL: Duration = Duration::from_secs(30);

/// The Workspace controller with its watches: Workspaces, their children, and Factories (a
/// Factory's change reconciles its workspaces).
pub fn controller(client: Client) -> Controller<Workspace> {
    let managed = crate::owners::managed();
    let controller = Controller::new(
        Api::<Workspace>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .owns(Api::<Namespace>::all(client.clone()), managed.clone())
        // Children in the namespace: owns() would look for the Workspace in that namespace.
        .watches(
            Api::<ResourceQuota>::all(client.clone()),
            managed.clone(),
            cluster_owners::<Workspace, _>,
        )
        .watches(
            Api::<LimitRange>::all(client.clone()),
            managed.clone(),
            cluster_owners::<Workspace, _>,
        )
        .watches(
            Api::<NetworkPolicy>::all(client.clone()),
            managed.clone(),
            cluster_owners::<Workspace, _>,
        )
        .watches(
            Api::<RoleBinding>::all(client.clone()),
            managed,
            cluster_owners::<Workspace, _>,
        )
        .watches(
            Api::<Factory>::all(client),
            watcher::Config::default(),
            move |factory: Factory| {
                let name = factory.name_any();
                super::refs_where(&store, |w: &Workspace| w.spec.factory == name)
            },
        )
}

/// Runs the Workspace controller until `shutdown` completes.
pub async fn run(
    controller: Controller<Workspace>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_controller(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

#[instrument(skip(workspace, ctx), fields(workspace = %workspace.name_any(), generation = workspace.meta().generation))]
async fn reconcile(workspace: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.kit.metrics.reconcile(CONTROLLER);
    let api = Api::<Workspace>::all(ctx.kit.client.clone());
    let has_finalizer = workspace.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = workspace.meta().deletion_timestamp.is_some();
    // fetch
    let factory = Api::<Factory>::all(ctx.kit.client.clone())
        .get_opt(&workspace.spec.factory)
        .await?;
    // The tenant of a Factory outside `--factory-selector` belongs to another instance, unless
    // this one holds a finalizer on it to release.
    let ours = (deleting && has_finalizer) || ctx.manages(factory.as_ref()).await?;
    if !ours {
        return Ok(Action::await_change());
    }
    // The finalizer helper releases the Workspace as soon as cleanup succeeds, so the wait for the
    // environments to go happens before it.
    if deleting
        && has_finalizer
        && let Some(wait) = delete_environments(&workspace, &ctx).await?
    {
        return Ok(wait);
    }
    with_finalizer(
        &ctx.kit,
        &api,
        FINALIZER,
        "workspace",
        workspace,
        |event| async {
            match event {
                finalizer::Event::Apply(workspace) => {
                    reconcile_workspace(&workspace, factory.as_ref(), &ctx).await
                }
                finalizer::Event::Cleanup(_) => Ok(Action::await_change()),
            }
        },
    )
    .await
}

async fn write_status(
    ctx: &Context,
    workspace: &Workspace,
    status: &WorkspaceStatus,
) -> Result<bool> {
    let api = Api::<Workspace>::all(ctx.kit.client.clone());
    // `status.allocation` and the Allocation condition are the allocation controller's, under
    // its own field manager: neither compared nor sent here.
    let stored = workspace
        .status
        .as_ref()
        .map(super::allocation::without_allocation);
    let status = super::allocation::without_allocation(status);
    Ok(patch_status(&ctx.kit, &api, workspace, stored.as_ref(), &status).await?)
}

async fn reconcile_workspace(
    workspace: &Workspace,
    factory: Option<&Factory>,
    ctx: &Context,
) -> Result<Action> {
    let now = ctx.kit.clock.now();
    let previous = workspace.status.as_ref();
    let generation = workspace.meta().generation;
    // The controller runs no reconcile before its store has listed every Workspace.
    let all = ctx.workspaces.state();
    // validate
    let validated = match validate::validate(workspace, factory, &all) {
        Ok(validated) => validated,
        Err(Refusal::Invalid(problems)) => {
            let message = format!("the spec is invalid and nothing was changed: {problems}");
            let status = status::refused_status(
                reasons::INVALID_SPEC,
                message,
                None,
                generation,
                previous,
                &now,
            );
            if write_status(ctx, workspace, &status).await? {
                warn!(%problems, "invalid spec; nothing changed");
                let note = format!("nothing changed: {problems}");
                ctx.kit
                    .events
                    .publish(workspace, EventType::Warning, events::INVALID_SPEC, note)
                    .await;
            }
            return Ok(Action::await_change());
        }
        Err(Refusal::FactoryMissing(name)) => {
            let message = format!(
                "Factory {name:?} does not exist; the workspace is built once it does (spec.factory names it)"
            );
            let status = status::refused_status(
                reasons::FACTORY_MISSING,
                message,
                None,
                generation,
                previous,
                &now,
            );
            write_status(ctx, workspace, &status).await?;
            // The Factory watch triggers this reconcile when it appears.
            return Ok(Action::await_change());
        }
    };
    // fetch the namespace: only one that is free or already the workspace's is used
    let current = match apply::check_namespace(ctx, &validated).await? {
        NamespaceCheck::Usable(current) => current,
        NamespaceCheck::Taken(message) => {
            let status = status::refused_status(
                reasons::NAMESPACE_TAKEN,
                message.clone(),
                Some(types::NAMESPACE_READY),
                generation,
                previous,
                &now,
            );
            if write_status(ctx, workspace, &status).await? {
                ctx.kit
                    .events
                    .publish(
                        workspace,
                        EventType::Warning,
                        events::NAMESPACE_TAKEN,
                        message,
                    )
                    .await;
            }
            return Ok(Action::requeue(NAMESPACE_POLL));
        }
        NamespaceCheck::Terminating => {
            let message = format!(
                "namespace {} is still being deleted; waiting to recreate it",
                validated.spec.namespace
            );
            let status = status::refused_status(
                reasons::NOT_READY,
                message,
                Some(types::NAMESPACE_READY),
                generation,
                previous,
                &now,
            );
            write_status(ctx, workspace, &status).await?;
            return Ok(Action::requeue(DELETION_POLL));
        }
    };
    // discover, then build every desired child
    let kueue = apply::discover_kueue(ctx).await?;
    let mut desired = build::build(&validated, kueue.as_ref());
    desired.operator_binding = ctx
        .identity
        .as_ref()
        .map(|operator| build::build_operator_binding(&validated, operator));
    // apply
    let observed = apply::apply_children(ctx, &desired, current.as_deref()).await?;
    // status
    let status = status::build_status(&validated, &observed, previous, &now);
    write_status(ctx, workspace, &status).await?;
    Ok(Action::requeue(if desired.queues.is_some() {
        QUEUE_RESYNC
    } else {
        RESYNC
    }))
}

/// Deletes the JupyterEnvironments in the workspace's namespace; `Some` (poll again) while any
/// remain. Once none do, the finalizer goes and the garbage collector deletes the namespace.
async fn delete_environments(workspace: &Workspace, ctx: &Context) -> Result<Option<Action>> {
    let namespace = &workspace.spec.namespace;
    let uid = workspace
        .uid()
        .ok_or(crate::Error::MissingField("metadata.uid"))?;
    let namespaces = Api::<Namespace>::all(ctx.kit.client.clone());
    // A namespace the workspace does not own is not its to empty.
    let owned = namespaces
        .get_opt(namespace)
        .await?
        .is_some_and(|ns| apply::owned_by(&ns, &uid));
    if !owned {
        return Ok(None);
    }
    let api = Api::<JupyterEnvironment>::namespaced(ctx.kit.client.clone(), namespace);
    let remaining = api.list_metadata(&ListParams::default()).await?.items;
    if remaining.is_empty() {
        info!(%namespace, "no environments left; releasing the namespace");
        return Ok(None);
    }
    let fresh: Vec<String> = remaining
        .iter()
        .filter(|e| e.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect();
    for name in &fresh {
        delete(&ctx.kit, &api, "jupyterenvironment", name).await?;
    }
    if !fresh.is_empty() {
        let note = format!(
            "deleting {} JupyterEnvironments before namespace {namespace}: {}",
            fresh.len(),
            fresh.join(", ")
        );
        ctx.kit
            .events
            .publish(
                workspace,
                EventType::Normal,
                events::ENVIRONMENTS_DELETED,
                note,
            )
            .await;
    }
    Ok(Some(Action::requeue(DELETION_POLL)))
}
