//! Allocations: GPU-hours granted to a Workspace for a period, metered from the Pods of its
//! namespace and enforced.
//!
//! A pipeline per Workspace: fetch (its ledger, then a consistent list of its namespace's Pods)
//! -> settle (pure, [`meter`]: finished Pods into the ledger once each) -> write the ledger ->
//! release the finished Pods' finalizers -> validate the allocation -> decide (pure, [`status`])
//! -> enforce (the closed quota, Kueue's `stopPolicy`; notebooks read `notebooksStopped`) ->
//! status, Events and metrics. The ledger is written before any finalizer is removed, and only
//! under the resourceVersion it was read at, so no Pod is lost or counted twice (see
//! docs/ARCHITECTURE.md).

pub mod apply;
pub mod build;
pub mod gauges;
pub mod meter;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use fabbrica_crds::v1alpha1::{AllocationState, Factory, Workspace};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use self::meter::{POD_FINALIZER, pod_facts};
use super::{Result, refs_where};
use crate::conditions::{events, reasons, types};
use crate::reconcile::Kit;
use crate::reconcile::conditions::{condition, settle};
use crate::reconcile::run::{run as run_controller, with_finalizer};

/// The controller's name in metrics.
pub const CONTROLLER: &str = "allocation";
/// The field manager of `status.allocation`, the `Allocation` condition and a ClusterQueue's
/// `stopPolicy`: fields of objects the Workspace controller applies too, which it must not
/// remove when it applies its own.
pub const FIELD_MANAGER: &str = "fabbrica-operator-allocation";
/// The finalizer that holds a Workspace until its namespace's GPU Pods are released.
pub const WORKSPACE_FINALIZER: &str = "fabbrica.io/gpu-accounting";
/// The key of the ledger in its ConfigMap.
pub const LEDGER_KEY: &str = "ledger.json";
/// The label naming the Workspace of a ledger or a closed quota. Not `fabbrica.io/workspace`:
/// the Workspace controller deletes the children under that label it did not build.
pub const LEDGER_LABEL: &str = "fabbrica.io/allocation";
/// The ResourceQuota that refuses GPU requests while an allocation is closed.
pub const CLOSED_QUOTA: &str = "fabbrica-allocation";
/// The MutatingAdmissionPolicy (and binding) that marks new GPU Pods of workspaces.
pub const POLICY: &str = "fabbrica-gpu-accounting";
/// How often a deleting Workspace checks whether its GPU Pods are released.
pub const CLEANUP_POLL: Duration = Duration::from_secs(2);

/// What the allocation reconciles share: the tenancy context and where ledgers live.
pub struct Context {
    /// The tenancy context (kit, Workspace store, `--factory-selector`).
    pub tenancy: Arc<super::Context>,
    /// The operator's namespace, where the ledgers are (tenants cannot write there).
    pub namespace: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl AsRef<Kit> for Context {
    fn as_ref(&self) -> &Kit {
        &self.tenancy.kit
    }
}

/// The allocation controller: Workspaces, and every Pod (mapped to the Workspace of its
/// namespace) as a trigger. Pods are not cached: each reconcile lists its namespace afresh.
pub fn controller(client: Client) -> Controller<Workspace> {
    let controller = Controller::new(
        Api::<Workspace>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            move |pod: Pod| {
                let namespace = pod.namespace();
                refs_where(&store, |w: &Workspace| {
                    namespace.as_deref() == Some(w.spec.namespace.as_str())
                })
            },
        )
        .with_config(Config::default().debounce(Duration::from_millis(250)))
}

/// Applies the admission policy, then runs the controller until `shutdown` completes.
pub async fn run(
    controller: Controller<Workspace>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    match apply::ensure_policy(&ctx).await {
        Ok(true) => info!(
            policy = POLICY,
            "GPU Pods of workspaces get the accounting finalizer at admission"
        ),
        Ok(false) => info!(
            "MutatingAdmissionPolicy is not served; the Pod watch adds the accounting finalizer"
        ),
        Err(err) => {
            warn!(error = %err, "applying the accounting admission policy failed; the Pod watch adds the finalizer")
        }
    }
    run_controller(controller, CONTROLLER, reconcile, ctx, shutdown).await;
}

#[instrument(skip(workspace, ctx), fields(workspace = %workspace.name_any()))]
async fn reconcile(workspace: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.tenancy.kit.metrics.reconcile(CONTROLLER);
    let api = Api::<Workspace>::all(ctx.tenancy.kit.client.clone());
    let has_finalizer = workspace
        .finalizers()
        .iter()
        .any(|f| f == WORKSPACE_FINALIZER);
    let deleting = workspace.meta().deletion_timestamp.is_some();
    let factory = Api::<Factory>::all(ctx.tenancy.kit.client.clone())
        .get_opt(&workspace.spec.factory)
        .await?;
    let ours = (deleting && has_finalizer) || ctx.tenancy.manages(factory.as_ref()).await?;
    if !ours {
        return Ok(Action::await_change());
    }
    // Both controllers add a finalizer to a new Workspace; the Workspace controller's first
    // spares the two a conflicting write (its addition triggers this reconcile again).
    let first_in = workspace
        .finalizers()
        .iter()
        .any(|f| f == super::workspace::FINALIZER);
    if !deleting && !has_finalizer && !first_in {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // The finalizer helper releases the Workspace as soon as cleanup succeeds, so the wait for
    // the Pods to be released happens before it.
    if deleting
        && has_finalizer
        && let Some(wait) = release_all(&workspace, &ctx).await?
    {
        return Ok(wait);
    }
    with_finalizer(
        &ctx.tenancy.kit,
        &api,
        WORKSPACE_FINALIZER,
        "workspace",
        workspace,
        |event| async {
            match event {
                finalizer::Event::Apply(workspace) => {
                    meter_and_enforce(&workspace, factory.as_ref(), &ctx).await
                }
                finalizer::Event::Cleanup(workspace) => {
                    ctx.tenancy
                        .kit
                        .metrics
                        .allocations
                        .remove(&workspace.name_any());
                    Ok(Action::await_change())
                }
            }
        },
    )
    .await
}

/// The namespace of `workspace` when it exists and is the workspace's.
async fn own_namespace(ctx: &Context, workspace: &Workspace) -> Result<Option<Namespace>> {
    let namespace = Api::<Namespace>::all(ctx.tenancy.kit.client.clone())
        .get_opt(&workspace.spec.namespace)
        .await?;
    let uid = workspace.uid().unwrap_or_default();
    Ok(namespace.filter(|ns| super::workspace::apply::owned_by(ns, &uid)))
}

async fn meter_and_enforce(
    workspace: &Workspace,
    factory: Option<&Factory>,
    ctx: &Context,
) -> Result<Action> {
    let kit = &ctx.tenancy.kit;
    let name = workspace.name_any();
    let Some(_) = own_namespace(ctx, workspace).await? else {
        // Nothing to meter until the Workspace controller has made its namespace.
        return Ok(Action::requeue(status::IDLE));
    };
    // fetch: the ledger first, then a consistent list of the namespace's Pods
    let (ledger, read_at) = apply::read_ledger(ctx, &name).await?;
    let pods = Api::<Pod>::namespaced(kit.client.clone(), &workspace.spec.namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let now = kit.clock.now();
    let facts: Vec<_> = pods.iter().filter_map(|p| pod_facts(p, now.0)).collect();
    // settle, then write the ledger before any Pod is released
    let settled = meter::settle(&ledger, &facts);
    if settled.ledger != ledger
        && !apply::write_ledger(ctx, workspace, &settled.ledger, read_at).await?
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let by_name = |wanted: &str| pods.iter().find(|p| p.name_any() == wanted);
    let mut retry = false;
    for pod in settled.release.iter().filter_map(|n| by_name(n)) {
        retry |= !apply::release(ctx, pod).await?;
    }
    for pod in settled.adopt.iter().filter_map(|n| by_name(n)) {
        retry |= !apply::adopt(ctx, pod).await?;
    }
    let usage = meter::usage(&settled.ledger, &settled.running, now.0);
    // validate and decide
    let previous = workspace
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref());
    let generation = workspace.meta().generation;
    let stored_condition = workspace
        .status
        .as_ref()
        .and_then(|s| fabbrica_crds::v1alpha1::condition(&s.conditions, types::ALLOCATION))
        .cloned();
    let (decision, valid) = match validate::validate(&workspace.spec, factory.map(|f| &f.spec)) {
        Ok(allocation) => (
            status::decide(allocation, &usage, previous, generation, &now),
            true,
        ),
        Err(problems) => {
            // Bad input changes nothing that is enforced: only the figures and the condition.
            let mut decision = status::decide(None, &usage, previous, generation, &now);
            if let Some(previous) = previous {
                decision.status = fabbrica_crds::v1alpha1::AllocationStatus {
                    used_gpu_hours: decision.status.used_gpu_hours,
                    used_gpu_seconds: decision.status.used_gpu_seconds,
                    running_gpus: decision.status.running_gpus,
                    as_of: decision.status.as_of.clone(),
                    pools: decision.status.pools.clone(),
                    months: decision.status.months.clone(),
                    ..previous.clone()
                };
            }
            decision.condition = condition(
                types::ALLOCATION,
                false,
                reasons::INVALID_SPEC,
                format!("the allocation is invalid and nothing enforced was changed: {problems}"),
                generation,
                &now,
            );
            (decision, false)
        }
    };
    let state = decision.status.state;
    let was = previous.map_or(AllocationState::Unlimited, |p| p.state);
    // enforce
    if valid {
        apply::set_quota(ctx, workspace, state.closed()).await?;
        let running_jobs = workspace
            .spec
            .allocation
            .as_ref()
            .map(|a| a.on_exhausted.running_jobs)
            .unwrap_or_default();
        apply::set_queue(
            ctx,
            workspace,
            build::stop_policy(state.closed(), running_jobs),
        )
        .await?;
    }
    // status
    let settled_condition: Condition = settle(
        vec![decision.condition.clone()],
        stored_condition.as_slice(),
    )
    .remove(0);
    let condition_changed = stored_condition.as_ref().is_none_or(|c| {
        (c.status.as_str(), c.reason.as_str())
            != (
                settled_condition.status.as_str(),
                settled_condition.reason.as_str(),
            )
    });
    if condition_changed || status::worth_writing(previous, &decision.status, &now) {
        apply::write_status(ctx, workspace, &decision.status, &settled_condition).await?;
        announce(
            ctx,
            workspace,
            was,
            &decision.status,
            previous,
            &settled_condition,
        )
        .await;
    }
    kit.metrics.allocations.set(&name, &decision.status);
    Ok(Action::requeue(if retry {
        Duration::from_secs(1)
    } else {
        decision.requeue
    }))
}

/// Events for what changed: 80 % reached, closed, reopened, notebooks stopped.
async fn announce(
    ctx: &Context,
    workspace: &Workspace,
    was: AllocationState,
    now: &fabbrica_crds::v1alpha1::AllocationStatus,
    previous: Option<&fabbrica_crds::v1alpha1::AllocationStatus>,
    condition: &Condition,
) {
    let publisher = &ctx.tenancy.kit.events;
    let state = now.state;
    let note = condition.message.clone();
    if state != was {
        match state {
            AllocationState::Warning if !was.closed() => {
                publisher
                    .publish(
                        workspace,
                        EventType::Warning,
                        events::ALLOCATION_NEARLY_USED,
                        note.clone(),
                    )
                    .await;
            }
            s if s.closed() && !was.closed() => {
                publisher
                    .publish(
                        workspace,
                        EventType::Warning,
                        events::ALLOCATION_CLOSED,
                        note.clone(),
                    )
                    .await;
            }
            s if !s.closed() && was.closed() => {
                publisher
                    .publish(
                        workspace,
                        EventType::Normal,
                        events::ALLOCATION_REOPENED,
                        note.clone(),
                    )
                    .await;
            }
            _ => {}
        }
    }
    if now.notebooks_stopped && !previous.is_some_and(|p| p.notebooks_stopped) {
        let note = format!("notebooks scaled to zero: {note}");
        publisher
            .publish(
                workspace,
                EventType::Warning,
                events::NOTEBOOKS_STOPPED,
                note,
            )
            .await;
    }
}

/// A deleting Workspace: close its namespace to new GPU Pods, delete the GPU Pods still there and
/// release them all; `Some` (poll again) while any carries [`POD_FINALIZER`]. (The ledger goes
/// with the Workspace, through its owner reference.)
async fn release_all(workspace: &Workspace, ctx: &Context) -> Result<Option<Action>> {
    if own_namespace(ctx, workspace).await?.is_none() {
        return Ok(None);
    }
    // A terminating namespace refuses new objects, and then new Pods too.
    if let Err(err) = apply::set_quota(ctx, workspace, true).await {
        info!(error = %err, "closing the quota of a deleting workspace failed");
    }
    let api = Api::<Pod>::namespaced(ctx.tenancy.kit.client.clone(), &workspace.spec.namespace);
    let marked: Vec<Pod> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.finalizers().iter().any(|f| f == POD_FINALIZER))
        .collect();
    if marked.is_empty() {
        return Ok(None);
    }
    for pod in &marked {
        if pod.metadata.deletion_timestamp.is_none() {
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => ctx.tenancy.kit.metrics.write("pod", "delete"),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(err.into()),
            }
        }
        apply::release(ctx, pod).await?;
    }
    info!(
        pods = marked.len(),
        "releasing the GPU Pods of a deleting workspace"
    );
    Ok(Some(Action::requeue(CLEANUP_POLL)))
}

/// A Workspace status without what the allocation controller writes (`allocation` and the
/// `Allocation` condition), as the Workspace controller compares and applies it.
pub fn without_allocation(
    status: &fabbrica_crds::v1alpha1::WorkspaceStatus,
) -> fabbrica_crds::v1alpha1::WorkspaceStatus {
    let mut status = status.clone();
    status.allocation = None;
    status.conditions.retain(|c| c.type_ != types::ALLOCATION);
    status
}
