//! The controller run loop, the error policy and the finalizer wrapper, the same for every
//! controller. A failed reconcile leaves Ready=False with the error, as a sentence, on the object
//! itself and in a Warning Event.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryFuture, TryFutureExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Kit;
use super::conditions::condition;
use super::status::patch_conditions;
use crate::conditions::{events, reasons, types};

/// What the error policy needs of a reconcile's error.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    /// A short, stable label for the `reason` of failure metrics.
    fn metric_label(&self) -> &'static str;
    /// How soon to try again.
    fn retry(&self) -> Duration {
        Duration::from_secs(10)
    }
    /// Whether the object's status already says what failed, so the kit leaves it as it is: the
    /// reconcile wrote which parts failed, or the failure is a conflict retried at once that no
    /// one needs to see.
    fn in_status(&self) -> bool {
        false
    }
}

impl Failure for crate::Error {
    fn metric_label(&self) -> &'static str {
        crate::Error::metric_label(self)
    }

    /// A Node that changed while it was written is retried at once with fresh data; parts that
    /// failed are retried as soon as the first of them allows.
    fn retry(&self) -> Duration {
        match self {
            Self::NodeConflict(_) => Duration::from_secs(1),
            Self::Incomplete { first, .. } => first.retry(),
            _ => Duration::from_secs(10),
        }
    }

    fn in_status(&self) -> bool {
        matches!(self, Self::NodeConflict(_) | Self::Incomplete { .. })
    }
}

/// The Ready condition a failed reconcile leaves on its object: False, reason
/// `ReconcileFailed`, the error as a sentence and when it is tried again. Pure.
pub fn failed_ready<E: Failure>(
    error: &E,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    condition(
        types::READY,
        false,
        reasons::RECONCILE_FAILED,
        format!(
            "the last reconcile failed and is retried in {} s: {error}",
            error.retry().as_secs()
        ),
        generation,
        now,
    )
}

/// Runs `reconcile`; when it fails, leaves Ready=False with the error on the object (unless the
/// reconcile already said what failed, [`Failure::in_status`]). A failure to write that is
/// logged: the error policy still counts, records and retries the reconcile's own error.
async fn reconcile_reporting<K, C, F>(
    object: Arc<K>,
    ctx: Arc<C>,
    attempt: F,
) -> Result<Action, F::Error>
where
    K: Resource<DynamicType = ()> + Serialize,
    C: AsRef<Kit>,
    F: TryFuture<Ok = Action>,
    F::Error: Failure,
{
    let result = TryFutureExt::into_future(attempt).await;
    if let Err(error) = &result
        && !error.in_status()
    {
        let kit: &Kit = (*ctx).as_ref();
        let ready = failed_ready(error, object.meta().generation, &kit.clock.now());
        if let Err(err) = patch_conditions(kit, object.as_ref(), vec![ready]).await {
            warn!(name = %object.name_any(), error = %err, "writing Ready=False failed");
        }
    }
    result
}

/// What a failed reconcile does: counts it, logs it, records a Warning Event on the object, and
/// tries again after [`Failure::retry`].
pub fn error_policy<K, E, C>(
    controller: &'static str,
    object: Arc<K>,
    error: &E,
    ctx: Arc<C>,
) -> Action
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    E: Failure,
    C: AsRef<Kit> + Send + Sync + 'static,
{
    let kit: &Kit = (*ctx).as_ref();
    kit.metrics.failure(controller, error.metric_label());
    warn!(
        controller,
        name = %object.name_any(),
        namespace = object.namespace().unwrap_or_default(),
        error = %error,
        "reconcile failed"
    );
    let note = format!("{error}; retrying in {} s", error.retry().as_secs());
    tokio::spawn(async move {
        let kit: &Kit = (*ctx).as_ref();
        kit.events
            .publish(
                object.as_ref(),
                EventType::Warning,
                events::RECONCILE_FAILED,
                note,
            )
            .await;
    });
    Action::requeue(error.retry())
}

/// Runs `controller` (its watches already declared) with `reconcile` and the shared
/// [`error_policy`] until `shutdown` completes; reconciles in flight then finish.
pub async fn run<K, C, R, F>(
    controller: Controller<K>,
    name: &'static str,
    reconcile: R,
    ctx: Arc<C>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
    C: AsRef<Kit> + Send + Sync + 'static,
    R: FnMut(Arc<K>, Arc<C>) -> F,
    F: TryFuture<Ok = Action> + Send + 'static,
    F::Error: Failure,
{
    let mut reconcile = reconcile;
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            move |object: Arc<K>, ctx: Arc<C>| {
                let attempt = reconcile(object.clone(), ctx.clone());
                reconcile_reporting(object, ctx, attempt)
            },
            move |object, error, ctx| error_policy(name, object, error, ctx),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(controller = name, error = %err, "reconcile did not complete");
            }
        })
        .await;
}

/// Runs `reconcile` under kube-runtime's finalizer helper, which adds `name` on first sight and
/// removes it once cleanup succeeds (one write each, counted as a `patch` of `kind`).
pub async fn with_finalizer<K, E, F>(
    kit: &Kit,
    api: &Api<K>,
    name: &str,
    kind: &str,
    object: Arc<K>,
    reconcile: impl FnOnce(finalizer::Event<K>) -> F,
) -> Result<Action, E>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    F: TryFuture<Ok = Action, Error = E>,
    E: std::error::Error + From<crate::Error> + 'static,
{
    let has_finalizer = object.finalizers().iter().any(|f| f == name);
    let deleting = object.meta().deletion_timestamp.is_some();
    let result = finalizer(api, name, object, reconcile).await;
    if result.is_ok() && has_finalizer == deleting {
        kit.metrics.write(kind, "patch");
    }
    result.map_err(|err| match err {
        finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => err,
        finalizer::Error::AddFinalizer(err) | finalizer::Error::RemoveFinalizer(err) => {
            crate::Error::Kube(err).into()
        }
        other => crate::Error::Finalizer(other.to_string()).into(),
    })
}
