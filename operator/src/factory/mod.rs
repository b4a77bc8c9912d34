//! The Factory controller: fetch -> validate -> build -> apply -> status.
//!
//! [`validate`] and [`build`] and [`placement`] and [`status`] are pure; [`apply`] does the writes.
//! A reconcile never asks why it ran: it compares everything it owns with the declaration and
//! writes only what differs, so a reconcile with nothing changed makes no write at all.

pub mod apply;
pub mod build;
pub mod placement;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Factory, FactoryStatus};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use crate::clock::Clock;
use crate::conditions::{events, reasons, types};
use crate::metrics::Metrics;
use crate::nodes::NodeIndex;
use crate::owners::cluster_owners;
use crate::{Error, FIELD_MANAGER, Result, Settings};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "factory";
/// The finalizer that removes fabbrica's labels and taints from Nodes, which owner references cannot clean.
pub const FINALIZER: &str = "fabbrica.io/node-cleanup";
/// How often a Factory is reconciled with no trigger at all (a safety net; triggers do the work).
pub const RESYNC: Duration = Duration::from_secs(600);

/// What a reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Settings from the flags.
    pub settings: Settings,
    /// Metrics, shared with the HTTP server.
    pub metrics: Arc<Metrics>,
    /// The Node projection.
    pub nodes: Arc<NodeIndex>,
    /// The clock of condition transition times.
    pub clock: Arc<dyn Clock>,
    /// Publishes Events.
    pub recorder: Recorder,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context for the given client and settings.
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        nodes: Arc<NodeIndex>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let reporter = Reporter {
            controller: labels::MANAGER.to_owned(),
            instance: Some(settings.reporter.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            settings,
            metrics,
            nodes,
            clock,
            recorder,
        }
    }

    async fn publish(&self, factory: &Factory, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        let mut reference = factory.object_ref(&());
        // Events of cluster-scoped objects live in `default`; Kubernetes 1.20's events.k8s.io/v1
        // validation requires the reference to name the Event's namespace.
        reference.namespace = Some("default".to_owned());
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => self.metrics.write("event", "create"),
            Err(err) => warn!(error = %err, "publishing an Event failed"),
        }
    }
}

/// Runs the Factory controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    trigger: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    ctx.metrics.register_controller(CONTROLLER);
    let client = ctx.client.clone();
    let settings = &ctx.settings;
    let mut factories = watcher::Config::default();
    if let Some(selector) = &settings.factory_selector {
        factories = factories.labels(selector);
    }
    let children = crate::owners::managed();
    let mut controller = Controller::new(Api::<Factory>::all(client.clone()), factories)
        .owns(Api::<StorageClass>::all(client.clone()), children.clone())
        .watches(
            Api::<ConfigMap>::namespaced(client.clone(), &settings.namespace),
            children.clone(),
            cluster_owners::<Factory, _>,
        );
    if settings.gpu_operator_namespace != settings.namespace {
        controller = controller.watches(
            Api::<ConfigMap>::namespaced(client.clone(), &settings.gpu_operator_namespace),
            children.clone(),
            cluster_owners::<Factory, _>,
        );
    }
    controller
        .reconcile_all_on(trigger)
        .with_config(controller::Config::default().debounce(settings.debounce))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "reconcile did not complete");
            }
        })
        .await;
}

#[instrument(skip(factory, ctx), fields(factory = %factory.name_any(), generation = factory.meta().generation))]
async fn reconcile(factory: Arc<Factory>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let api = Api::<Factory>::all(ctx.client.clone());
    let has_finalizer = factory.finalizers().iter().any(|f| f == FINALIZER);
    let deleting = factory.meta().deletion_timestamp.is_some();
    let result = finalizer(&api, FINALIZER, factory, |event| async {
        match event {
            finalizer::Event::Apply(factory) => apply(&factory, &ctx).await,
            finalizer::Event::Cleanup(factory) => cleanup(&factory, &ctx).await,
        }
    })
    .await;
    // The helper adds the finalizer on first sight and removes it after cleanup: one write each.
    if result.is_ok() && has_finalizer == deleting {
        ctx.metrics.write("factory", "patch");
    }
    result.map_err(|err| match err {
        finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => err,
        finalizer::Error::AddFinalizer(err) | finalizer::Error::RemoveFinalizer(err) => {
            Error::Kube(err)
        }
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(factory: &Factory, ctx: &Context) -> Result<Action> {
    let now = ctx.clock.now();
    let previous = factory.status.as_ref();
    // validate
    let validated = match validate::validate(factory) {
        Ok(validated) => validated,
        Err(problems) => {
            let status =
                status::invalid_status(&problems, factory.meta().generation, previous, &now);
            if patch_status(ctx, factory, &status).await? {
                warn!(%problems, "invalid spec; nothing changed");
                ctx.publish(
                    factory,
                    EventType::Warning,
                    events::INVALID_SPEC,
                    format!("nothing changed: {problems}"),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
    };
    // build
    let metas = ctx.nodes.metas();
    let assignment = placement::assign(&validated, &metas);
    // apply
    let observed = apply::apply_children(ctx, &validated, &assignment).await?;
    let selectors: Vec<String> = validated
        .spec
        .gpu_pools
        .iter()
        .map(placement::label_selector)
        .collect();
    apply::apply_nodes(ctx, &assignment, &metas, &selectors).await?;
    // status
    let members: Vec<&String> = assignment.desired.keys().collect();
    let facts = ctx.nodes.facts_of(members);
    let status = status::build_status(&validated, &assignment, &facts, &observed, previous, &now);
    if patch_status(ctx, factory, &status).await? {
        let was_ready = ready_of(previous);
        let is_ready = ready_of(Some(&status));
        if was_ready != is_ready {
            let (type_, reason) = if is_ready == Some(true) {
                (EventType::Normal, events::BECAME_READY)
            } else {
                (EventType::Warning, events::BECAME_NOT_READY)
            };
            let message = fabbrica_crds::v1alpha1::condition(&status.conditions, types::READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.publish(factory, type_, reason, message).await;
        }
    }
    Ok(Action::requeue(RESYNC))
}

fn ready_of(status: Option<&FactoryStatus>) -> Option<bool> {
    let condition = fabbrica_crds::v1alpha1::condition(&status?.conditions, types::READY)?;
    Some(condition.status == "True")
}

/// Patches the status when it differs from what is stored; `true` when it wrote.
async fn patch_status(ctx: &Context, factory: &Factory, status: &FactoryStatus) -> Result<bool> {
    if factory.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let body = json!({
        "apiVersion": Factory::api_version(&()),
        "kind": Factory::kind(&()),
        "status": status,
    });
    let api = Api::<Factory>::all(ctx.client.clone());
    api.patch_status(
        &factory.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    ctx.metrics.write("status", "apply");
    Ok(true)
}

/// Removes this Factory's labels and taints from every Node; children go with owner references.
async fn cleanup(factory: &Factory, ctx: &Context) -> Result<Action> {
    let name = factory.name_any();
    let metas = ctx.nodes.metas();
    let mut release: Vec<String> = metas
        .iter()
        .filter(|(_, m)| m.labels.get(labels::FACTORY) == Some(&name))
        .map(|(n, _)| n.clone())
        .collect();
    release.sort();
    let count = release.len();
    let assignment = placement::Assignment {
        release,
        ..placement::Assignment::default()
    };
    apply::apply_nodes(ctx, &assignment, &metas, &[]).await?;
    if count > 0 {
        let note = format!("removed fabbrica labels and taints from {count} Nodes");
        ctx.publish(factory, EventType::Normal, events::NODES_RELEASED, note)
            .await;
    }
    Ok(Action::await_change())
}

fn error_policy(factory: Arc<Factory>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(CONTROLLER, error.metric_label());
    warn!(factory = %factory.name_any(), error = %error, "reconcile failed");
    let retry = match error {
        Error::NodeConflict(_) => Duration::from_secs(1),
        _ => Duration::from_secs(10),
    };
    let note = format!("{}: {error}", reasons::RECONCILE_FAILED);
    tokio::spawn(async move {
        ctx.publish(&factory, EventType::Warning, events::RECONCILE_FAILED, note)
            .await;
    });
    Action::requeue(retry)
}
