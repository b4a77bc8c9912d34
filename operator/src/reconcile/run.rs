//! The controller run loop, the error policy and the finalizer wrapper, the same for every
//! controller.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryFuture};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::Kit;
use crate::conditions::{events, reasons};

/// What the error policy needs of a reconcile's error.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    /// A short, stable label for the `reason` of failure metrics.
    fn metric_label(&self) -> &'static str;
    /// How soon to try again.
    fn retry(&self) -> Duration {
        Duration::from_secs(10)
    }
}

impl Failure for crate::Error {
    fn metric_label(&self) -> &'static str {
        crate::Error::metric_label(self)
    }

    /// A Node that changed while it was written is retried at once with fresh data.
    fn retry(&self) -> Duration {
        match self {
            Self::NodeConflict(_) => Duration::from_secs(1),
            _ => Duration::from_secs(10),
        }
    }
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
    let note = format!("{}: {error}", reasons::RECONCILE_FAILED);
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
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: AsRef<Kit> + Send + Sync + 'static,
    R: FnMut(Arc<K>, Arc<C>) -> F,
    F: TryFuture<Ok = Action> + Send + 'static,
    F::Error: Failure,
{
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
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
