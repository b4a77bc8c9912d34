//! The Maintenance controller: fetch -> validate -> plan -> step -> apply -> status.
//!
//! A Maintenance is a resumable operation: its plan (waves of whole failure domains) is made on
//! the first reconcile and kept in its status with every Node's progress. Each reconcile reads the
//! targeted pools' Nodes, drains the Nodes that are draining, takes one pure step of the state
//! machine ([`plan::step`]), carries out the step's effects (cordons and releases first, so a
//! failure never leaves more Nodes out than the budget) and writes the status. A restarted
//! operator resumes from the status and counts out-of-service Nodes from the cluster itself, so it
//! never exceeds a pool's budget. [`validate`], [`plan`] and [`status`] are pure; [`apply`] does
//! the IO.

pub mod apply;
pub mod plan;
pub mod status;
pub mod validate;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fabbrica_crds::v1alpha1::{Factory, Maintenance, MaintenanceStatus};
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::{finalizer, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{instrument, warn};

use self::plan::{Effect, Input, phase};
use self::status::{Progress, phases};
use crate::clock::Clock;
use crate::conditions::{events as event_reasons, reasons};
use crate::metrics::Metrics;
use crate::reconcile::Kit;
use crate::reconcile::run::{run as run_controller, with_finalizer};
use crate::reconcile::status::patch_status;
use crate::{Result, Settings};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "maintenance";
/// The finalizer that releases the Nodes a deleted Maintenance still holds.
pub const FINALIZER: &str = "fabbrica.io/maintenance-release";
/// How often a Maintenance whose Factory is missing is looked at again.
const FACTORY_RETRY: Duration = Duration::from_secs(30);

/// What a reconcile needs.
pub struct Context {
    /// The client, metrics, Event publisher and clock of the reconcile kit.
    pub kit: Kit,
    /// Reconcile only the Maintenances of Factories matching this label selector.
    pub factory_selector: Option<String>,
    /// How often a running Maintenance looks at its Nodes again.
    pub poll: Duration,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl AsRef<Kit> for Context {
    fn as_ref(&self) -> &Kit {
        &self.kit
    }
}

impl Context {
    /// A context for the given client and settings.
    pub fn new(
        client: Client,
        settings: &Settings,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            kit: Kit::new(client, metrics, clock, &settings.reporter),
            factory_selector: settings.factory_selector.clone(),
            poll: settings.maintenance_poll,
        }
    }

    /// Whether this instance reconciles the Maintenances of `factory`: always without a
    /// `--factory-selector`; with one, only when the Factory matches it (asked of the API server).
    async fn manages(&self, factory: &str) -> Result<bool> {
        let Some(selector) = &self.factory_selector else {
            return Ok(true);
        };
        let params = ListParams::default()
            .labels(selector)
            .fields(&format!("metadata.name={factory}"));
        let matching = Api::<Factory>::all(self.kit.client.clone())
            .list_metadata(&params)
            .await?;
        Ok(!matching.items.is_empty())
    }
}

/// Runs the Maintenance controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    ctx.kit.metrics.register_controller(CONTROLLER);
    let controller = Controller::new(
        Api::<Maintenance>::all(ctx.kit.client.clone()),
        watcher::Config::default(),
    );
    run_controller(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

#[instrument(skip(maintenance, ctx), fields(maintenance = %maintenance.name_any(), generation = maintenance.meta().generation))]
async fn reconcile(maintenance: Arc<Maintenance>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.kit.metrics.reconcile(CONTROLLER);
    // Another instance's Maintenance is left to it, finalizer and all.
    if !ctx.manages(&maintenance.spec.factory).await? {
        return Ok(Action::await_change());
    }
    let api = Api::<Maintenance>::all(ctx.kit.client.clone());
    with_finalizer(
        &ctx.kit,
        &api,
        FINALIZER,
        "maintenance",
        maintenance,
        |event| async {
            match event {
                finalizer::Event::Apply(m) => apply(&m, &ctx).await,
                finalizer::Event::Cleanup(m) => cleanup(&m, &ctx).await,
            }
        },
    )
    .await
}

async fn write_status(ctx: &Context, m: &Maintenance, status: &MaintenanceStatus) -> Result<bool> {
    let api = Api::<Maintenance>::all(ctx.kit.client.clone());
    patch_status(&ctx.kit, &api, m, m.status.as_ref(), status).await
}

async fn apply(m: &Maintenance, ctx: &Context) -> Result<Action> {
    let now = ctx.kit.clock.now();
    let generation = m.meta().generation;
    let previous = m.status.as_ref();
    if status::finished(previous.and_then(|s| s.phase.as_deref())) {
        return Ok(Action::await_change());
    }
    // fetch
    let Some(factory) = Api::<Factory>::all(ctx.kit.client.clone())
        .get_opt(&m.spec.factory)
        .await?
    else {
        let message = format!(
            "Factory {:?} does not exist; nothing is done until it does",
            m.spec.factory
        );
        let status = status::refused(
            reasons::FACTORY_MISSING,
            phases::PENDING,
            message,
            generation,
            previous,
            &now,
        );
        write_status(ctx, m, &status).await?;
        return Ok(Action::requeue(FACTORY_RETRY));
    };
    // validate
    let validated = match validate::validate(m, &factory.spec) {
        Ok(validated) => validated,
        Err(problems) => {
            let status = status::invalid_status(&problems, generation, previous, &now);
            if write_status(ctx, m, &status).await? {
                warn!(%problems, "invalid spec; nothing done");
                ctx.kit
                    .events
                    .publish(
                        m,
                        EventType::Warning,
                        event_reasons::INVALID_SPEC,
                        format!("nothing done: {problems}"),
                    )
                    .await;
            }
            return Ok(Action::await_change());
        }
    };
    // observe
    let nodes = apply::list_nodes(&ctx.kit, &factory.name_any(), validated.budgets.keys()).await?;
    // plan, once
    let planned = previous.filter(|s| !s.waves.is_empty());
    let (waves, stored_nodes, domain_label) = match planned {
        Some(status) => (
            status.waves.clone(),
            status.nodes.clone(),
            status.domain_label.clone(),
        ),
        None => {
            let targets = plan::targets(
                nodes.values(),
                &validated.budgets,
                &validated.spec.node_selector,
                validated.domain_label.as_deref(),
            );
            if targets.is_empty() {
                let message = format!(
                    "no Node of Factory {} in pools {} matches yet; nothing is planned until one does",
                    validated.spec.factory,
                    validated
                        .budgets
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let status = status::refused(
                    reasons::NO_NODES,
                    phases::PENDING,
                    message,
                    generation,
                    previous,
                    &now,
                );
                write_status(ctx, m, &status).await?;
                return Ok(Action::requeue(ctx.poll));
            }
            let (waves, planned) = plan::waves(&targets, validated.wave_size());
            (waves, planned, validated.domain_label.clone())
        }
    };
    // drain the Nodes that are draining, unless halted
    let mut drains = HashMap::new();
    if !plan::halted(&validated.spec, &stored_nodes) {
        for node in stored_nodes.iter().filter(|n| n.phase == phase::DRAINING) {
            if nodes.contains_key(&node.name) {
                drains.insert(node.name.clone(), apply::drain(&ctx.kit, &node.name).await?);
            }
        }
    }
    // step
    let step = plan::step(
        &stored_nodes,
        &Input {
            name: &validated.name,
            spec: &validated.spec,
            budgets: &validated.budgets,
            nodes: &nodes,
            drains: &drains,
            now: &now,
        },
    );
    let mut effects = step.effects.clone();
    // status
    let status = status::build_status(
        &validated.spec,
        Progress {
            domain_label,
            waves: &waves,
            nodes: step.nodes,
            budgets: &validated.budgets,
            unavailable: &step.unavailable,
            held: step.held,
        },
        generation,
        previous,
        &now,
    );
    effects.extend(transitions(previous, &status));
    // apply: releases and cordons before the status, so a restart counts them from the Nodes
    apply::carry_out(&ctx.kit, m, &effects, &nodes, &now).await?;
    write_status(ctx, m, &status).await?;
    if status::finished(status.phase.as_deref()) {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(ctx.poll))
}

/// Events for what changed between two statuses: waves completed, the maintenance finished,
/// cancelled or paused at its failure threshold.
fn transitions(previous: Option<&MaintenanceStatus>, now: &MaintenanceStatus) -> Vec<Effect> {
    let mut effects = Vec::new();
    let before = |index: u32| {
        previous
            .and_then(|s| s.waves.iter().find(|w| w.index == index))
            .map(|w| w.phase.as_str())
    };
    for wave in &now.waves {
        if wave.phase == plan::wave_phase::COMPLETE
            && before(wave.index) != Some(plan::wave_phase::COMPLETE)
        {
            effects.push(Effect::Event {
                warning: false,
                reason: plan::events::WAVE_COMPLETE,
                note: format!("wave {} ({}) complete", wave.index, wave.domains.join(", ")),
            });
        }
    }
    let phase_before = previous.and_then(|s| s.phase.as_deref());
    let reason_of = |s: &MaintenanceStatus| {
        fabbrica_crds::v1alpha1::condition(&s.conditions, crate::conditions::types::PROGRESSING)
            .map(|c| c.reason.clone())
    };
    if phase_before != now.phase.as_deref() || previous.and_then(reason_of) != reason_of(now) {
        let message = now.message.clone().unwrap_or_default();
        let event = match now.phase.as_deref() {
            Some(phases::SUCCEEDED) => Some((false, plan::events::COMPLETED)),
            Some(phases::FAILED) => Some((true, plan::events::COMPLETED)),
            Some(phases::CANCELLED) => Some((false, plan::events::CANCELLED)),
            Some(phases::PAUSED)
                if reason_of(now).as_deref() == Some(reasons::FAILURE_THRESHOLD) =>
            {
                Some((true, plan::events::FAILURE_THRESHOLD))
            }
            _ => None,
        };
        if let Some((warning, reason)) = event {
            effects.push(Effect::Event {
                warning,
                reason,
                note: message,
            });
        }
    }
    effects
}

/// On deletion: releases every Node the Maintenance still holds, except failed ones, which stay
/// cordoned for a person to look at.
async fn cleanup(m: &Maintenance, ctx: &Context) -> Result<Action> {
    let failed: BTreeSet<String> = m
        .status
        .iter()
        .flat_map(|s| s.nodes.iter())
        .filter(|n| n.phase == phase::FAILED)
        .map(|n| n.name.clone())
        .collect();
    let released = apply::release_all(&ctx.kit, &m.name_any(), &failed).await?;
    if released > 0 {
        tracing::info!(released, "deleted maintenance released its Nodes");
    }
    Ok(Action::await_change())
}
