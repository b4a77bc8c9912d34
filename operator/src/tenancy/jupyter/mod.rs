//! The JupyterEnvironment controller: fetch -> validate -> build -> apply -> status.
//!
//! An environment belongs to the Workspace whose namespace it is in. It is validated against its
//! Factory's catalog and its Workspace's quota; a refused one gets a condition naming the field
//! and nothing is created (or deleted) for it. [`validate`], [`build`] and [`status`] are pure;
//! [`apply`] does the writes.

pub mod apply;
pub mod build;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use fabbrica_crds::v1alpha1::{Factory, JupyterEnvironment, JupyterEnvironmentStatus, Workspace};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::{instrument, warn};

pub use self::apply::random_token;
use super::{Context, Result};
use crate::conditions::{events, reasons, types};
use crate::reconcile::conditions::is_true;
use crate::reconcile::run::run as run_controller;
use crate::reconcile::status::patch_status;

/// The controller's name in metrics.
pub const CONTROLLER: &str = "jupyter";
/// How often an environment is reconciled with no trigger.
pub const RESYNC: Duration = Duration::from_secs(300);

/// The JupyterEnvironment controller with its watches: environments, their children, and the
/// Workspaces and Factories that admit them.
pub fn controller(ctx: &Arc<Context>) -> Controller<JupyterEnvironment> {
    let client = ctx.kit.client.clone();
    let managed = crate::owners::managed();
    let controller = Controller::new(
        Api::<JupyterEnvironment>::all(client.clone()),
        watcher::Config::default(),
    );
    let by_workspace = controller.store();
    let by_factory = controller.store();
    let workspaces = ctx.workspaces.clone();
    controller
        .owns(Api::<StatefulSet>::all(client.clone()), managed.clone())
        .owns(Api::<Service>::all(client.clone()), managed.clone())
        .owns(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            managed.clone(),
        )
        .owns(Api::<NetworkPolicy>::all(client.clone()), managed)
        .watches(
            Api::<Workspace>::all(client.clone()),
            watcher::Config::default(),
            move |workspace: Workspace| {
                let namespace = workspace.spec.namespace;
                super::refs_where(&by_workspace, |e: &JupyterEnvironment| {
                    e.namespace().as_ref() == Some(&namespace)
                })
            },
        )
        .watches(
            Api::<Factory>::all(client),
            watcher::Config::default(),
            move |factory: Factory| {
                let name = factory.name_any();
                let namespaces: Vec<String> = workspaces
                    .state()
                    .iter()
                    .filter(|w| w.spec.factory == name)
                    .map(|w| w.spec.namespace.clone())
                    .collect();
                super::refs_where(&by_factory, |e: &JupyterEnvironment| {
                    e.namespace().is_some_and(|n| namespaces.contains(&n))
                })
            },
        )
}

/// Runs the JupyterEnvironment controller until `shutdown` completes.
pub async fn run(
    controller: Controller<JupyterEnvironment>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_controller(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

async fn write_status(
    ctx: &Context,
    env: &JupyterEnvironment,
    status: &JupyterEnvironmentStatus,
) -> Result<bool> {
    let api = Api::<JupyterEnvironment>::namespaced(
        ctx.kit.client.clone(),
        &env.namespace().unwrap_or_default(),
    );
    let status = status::with_eviction_notice(status.clone(), env, &ctx.kit.clock.now());
    Ok(patch_status(&ctx.kit, &api, env, env.status.as_ref(), &status).await?)
}

#[instrument(skip(env, ctx), fields(environment = %env.name_any(), namespace = env.namespace(), generation = env.meta().generation))]
async fn reconcile(env: Arc<JupyterEnvironment>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.kit.metrics.reconcile(CONTROLLER);
    if env.meta().deletion_timestamp.is_some() {
        // Children go with their owner references; a kept home volume stays.
        return Ok(Action::await_change());
    }
    let now = ctx.kit.clock.now();
    let previous = env.status.as_ref();
    let generation = env.meta().generation;
    let namespace = env
        .namespace()
        .ok_or(crate::Error::MissingField("metadata.namespace"))?;
    // fetch
    let not_ready = |reason: &str, message: String| {
        status::refused_status(reason, message, status::PENDING, generation, previous, &now)
    };
    let Some(workspace) = ctx.workspace_of(&namespace).await? else {
        if ctx.factory_selector.is_some() {
            // Whose it is cannot be told; an instance without a selector reports it.
            return Ok(Action::await_change());
        }
        let message = format!(
            "no Workspace has namespace {namespace}; environments run in a workspace's namespace"
        );
        write_status(&ctx, &env, &not_ready(reasons::WORKSPACE_MISSING, message)).await?;
        return Ok(Action::await_change());
    };
    let workspace_status = workspace
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let factory = Api::<Factory>::all(ctx.kit.client.clone())
        .get_opt(&workspace.spec.factory)
        .await?;
    // The tenant of a Factory outside `--factory-selector` belongs to another instance.
    if !ctx.manages(factory.as_ref()).await? {
        return Ok(Action::await_change());
    }
    let unusable = if workspace.meta().deletion_timestamp.is_some() {
        Some("is being deleted".to_owned())
    } else if !is_true(workspace_status, types::NAMESPACE_READY) {
        Some("has not set up its namespace yet".to_owned())
    } else if factory.is_none() {
        Some(format!(
            "names Factory {:?}, which does not exist",
            workspace.spec.factory
        ))
    } else {
        None
    };
    let (Some(factory), None) = (factory, unusable.clone()) else {
        let message = format!(
            "Workspace {} {}; nothing is created until it is usable",
            workspace.name_any(),
            unusable.unwrap_or_default()
        );
        write_status(
            &ctx,
            &env,
            &not_ready(reasons::WORKSPACE_NOT_READY, message),
        )
        .await?;
        // The Workspace and Factory watches trigger this reconcile when that changes.
        return Ok(Action::await_change());
    };
    // validate
    let validated = match validate::validate(&env, &workspace, &factory) {
        Ok(validated) => validated,
        Err(problems) => {
            let message = format!("refused, nothing was created: {problems}");
            let status = status::refused_status(
                reasons::PROFILE_REFUSED,
                message,
                status::REFUSED,
                generation,
                previous,
                &now,
            );
            if write_status(&ctx, &env, &status).await? {
                warn!(%problems, "profile refused; nothing created");
                ctx.kit
                    .events
                    .publish(
                        env.as_ref(),
                        EventType::Warning,
                        events::PROFILE_REFUSED,
                        format!("nothing created: {problems}"),
                    )
                    .await;
            }
            return Ok(Action::await_change());
        }
    };
    // build
    let desired = build::build(&validated);
    // apply
    let ready_replicas = apply::apply_children(&ctx, &validated, &desired).await?;
    // status
    let status = status::build_status(&validated, ready_replicas, previous, &now);
    write_status(&ctx, &env, &status).await?;
    Ok(Action::requeue(RESYNC))
}
