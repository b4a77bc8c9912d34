//! The Factory controller: fetch -> validate -> build -> apply -> status.
//!
//! [`validate`], [`placement`], [`build`] and [`status`] are pure; [`apply`] does the writes.
//! Discovery (is Multus served?) happens before the build, so the build returns every desired
//! child at once. A reconcile never asks why it ran: it compares everything it owns with the
//! declaration and writes only what differs, so a reconcile with nothing changed makes no write.

pub mod apply;
pub mod build;
pub mod hostlist;
pub mod placement;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabbrica_crds::labels;
use fabbrica_crds::v1alpha1::{Factory, FactoryStatus};
use futures::{Stream, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::clock::Clock;
use crate::conditions::{events, types};
use crate::metrics::Metrics;
use crate::nodes::{NodeIndex, NodeName};
use crate::owners::owners_unless_echo;
use crate::reconcile::Kit;
use crate::reconcile::echo::ObjectVersion;
use crate::reconcile::run::{run as run_controller, with_finalizer};
use crate::reconcile::status::patch_status;
use crate::{Result, Settings};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "factory";
/// The finalizer that removes fabbrica's labels and taints from Nodes, which owner references cannot clean.
pub const FINALIZER: &str = "fabbrica.io/node-cleanup";
/// How often a Factory is reconciled with no trigger at all (a safety net; triggers do the work).
pub const RESYNC: Duration = Duration::from_secs(600);

/// What a reconcile needs.
pub struct Context {
    /// The client, metrics and Event publisher of the reconcile kit.
    pub kit: Kit,
    /// Settings from the flags.
    pub settings: Settings,
    /// The Node projection.
    pub nodes: Arc<NodeIndex>,
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
        Self {
            kit: Kit::new(client, metrics, clock, &settings.reporter),
            settings,
            nodes,
        }
    }
}

impl AsRef<Kit> for Context {
    fn as_ref(&self) -> &Kit {
        &self.kit
    }
}

/// Runs the Factory controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    trigger: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    ctx.kit.metrics.register_controller(CONTROLLER);
    let client = ctx.kit.client.clone();
    let settings = &ctx.settings;
    let mut factories = watcher::Config::default();
    if let Some(selector) = &settings.factory_selector {
        factories = factories.labels(selector);
    }
    let children = crate::owners::managed();
    // The echo of the controller's own writes (a status, a child applied) triggers nothing: the
    // reconcile that wrote it had nothing left to do (`reconcile::echo`).
    let writes = ctx.kit.writes.clone();
    let (store, writer) = reflector::store();
    let echoes = writes.clone();
    let trigger_self = reflector(
        writer,
        watcher::watcher(Api::<Factory>::all(client.clone()), factories),
    )
    .applied_objects()
    .try_filter(move |factory| {
        let echoes = echoes.clone();
        let seen = ObjectVersion::of(factory);
        async move { !echoes.settled_echo(seen).await }
    });
    let mut controller = Controller::for_stream(trigger_self, store)
        .watches(
            Api::<StorageClass>::all(client.clone()),
            children.clone(),
            owners_unless_echo::<Factory, _>(writes.clone()),
        )
        .watches(
            Api::<ConfigMap>::namespaced(client.clone(), &settings.namespace),
            children.clone(),
            owners_unless_echo::<Factory, _>(writes.clone()),
        );
    // Validation Jobs of the pools' Nodes: a finished one is read at once.
    controller = controller.watches(
        Api::<Job>::namespaced(client.clone(), &settings.namespace),
        children.clone(),
        owners_unless_echo::<Factory, _>(writes.clone()),
    );
    if settings.gpu_operator_namespace != settings.namespace {
        controller = controller.watches(
            Api::<ConfigMap>::namespaced(client.clone(), &settings.gpu_operator_namespace),
            children.clone(),
            owners_unless_echo::<Factory, _>(writes.clone()),
        );
    }
    let controller = controller
        .reconcile_all_on(trigger)
        .with_config(controller::Config::default().debounce(settings.debounce));
    run_controller(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

#[instrument(skip(factory, ctx), fields(factory = %factory.name_any(), generation = factory.meta().generation))]
async fn reconcile(factory: Arc<Factory>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.kit.metrics.reconcile(CONTROLLER);
    let api = Api::<Factory>::all(ctx.kit.client.clone());
    with_finalizer(
        &ctx.kit,
        &api,
        FINALIZER,
        "factory",
        factory,
        |event| async {
            match event {
                finalizer::Event::Apply(factory) => apply(&factory, &ctx).await,
                finalizer::Event::Cleanup(factory) => cleanup(&factory, &ctx).await,
            }
        },
    )
    .await
}

async fn apply(factory: &Factory, ctx: &Context) -> Result<Action> {
    let now = ctx.kit.clock.now();
    let previous = factory.status.as_ref();
    // validate
    let validated = match validate::validate(factory) {
        Ok(validated) => validated,
        Err(problems) => {
            let status =
                status::invalid_status(&problems, factory.meta().generation, previous, &now);
            if write_status(ctx, factory, &status).await? {
                warn!(%problems, "invalid spec; nothing changed");
                ctx.kit
                    .events
                    .publish(
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
    // discover, then build every desired child and Node
    let started = Instant::now();
    let multus = apply::discover_multus(&ctx.kit.client).await;
    let metas = ctx.nodes.metas();
    let desired = build::build(&validated, &metas, &ctx.settings, multus.as_ref());
    let built = started.elapsed();
    // apply: every part, whatever becomes of the others; the children and the Nodes at once
    let nodes = async {
        match crate::health::release(ctx, &desired.assignment.release, &metas).await {
            Ok(()) => apply::apply_nodes(ctx, &desired.assignment, &metas)
                .await
                .err(),
            Err(err) => Some(err),
        }
    };
    let (mut outcome, nodes) = futures::join!(apply::apply_children(ctx, &desired), nodes);
    outcome.nodes = nodes;
    let applied = started.elapsed();
    // health: validation Jobs and quarantine; the discovered placement against the declared one
    let (health, health_failure) =
        crate::health::reconcile(ctx, &validated, &desired.assignment, &metas).await;
    let checked = started.elapsed();
    let drift =
        crate::health::drift::check(&validated.spec.fabric.topology, &desired.assignment, &metas);
    // status
    let facts = ctx.nodes.facts_of(desired.assignment.desired.keys());
    let observed = status::Observed {
        multus: multus.is_some(),
        topology_config_map: desired.topology_config_map.clone(),
        device_plugin_config_map: desired.device_plugin_config_map.clone(),
        failed: outcome.failed_parts(&ctx.settings),
        health,
        drift,
    };
    let status = status::build_status(
        &validated,
        &desired.assignment,
        &facts,
        &observed,
        previous,
        &now,
    );
    let wrote_status = write_status(ctx, factory, &status).await?;
    info!(
        nodes = metas.len(),
        members = desired.assignment.desired.len(),
        build_ms = built.as_millis(),
        apply_ms = (applied - built).as_millis(),
        health_ms = (checked - applied).as_millis(),
        status_ms = (started.elapsed() - checked).as_millis(),
        "factory reconciled"
    );
    if wrote_status {
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
            ctx.kit
                .events
                .publish(factory, type_, reason, message)
                .await;
        }
    }
    // A failed part is retried through the error policy; the status already names it.
    if let Some(err) = outcome.into_error(status::failed_parts(&status.conditions)) {
        return Err(err);
    }
    if let Some(err) = health_failure {
        return Err(err);
    }
    Ok(Action::requeue(RESYNC))
}

fn ready_of(status: Option<&FactoryStatus>) -> Option<bool> {
    let condition = fabbrica_crds::v1alpha1::condition(&status?.conditions, types::READY)?;
    Some(condition.status == "True")
}

/// Patches the status when it differs from what is stored; `true` when it wrote.
async fn write_status(ctx: &Context, factory: &Factory, status: &FactoryStatus) -> Result<bool> {
    let api = Api::<Factory>::all(ctx.kit.client.clone());
    patch_status(&ctx.kit, &api, factory, factory.status.as_ref(), status).await
}

/// Removes this Factory's labels and taints from every Node; children go with owner references.
async fn cleanup(factory: &Factory, ctx: &Context) -> Result<Action> {
    let name = factory.name_any();
    let metas = ctx.nodes.metas();
    let mut release: Vec<NodeName> = metas
        .iter()
        .filter(|(_, m)| m.labels.get(labels::FACTORY) == Some(&name))
        .map(|(n, _)| n.clone())
        .collect();
    release.sort();
    let count = release.len();
    crate::health::release(ctx, &release, &metas).await?;
    let assignment = placement::Assignment {
        release,
        ..placement::Assignment::default()
    };
    apply::apply_nodes(ctx, &assignment, &metas).await?;
    if count > 0 {
        let note = format!("removed fabbrica labels and taints from {count} Nodes");
        ctx.kit
            .events
            .publish(factory, EventType::Normal, events::NODES_RELEASED, note)
            .await;
    }
    Ok(Action::await_change())
}
