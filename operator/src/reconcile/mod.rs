//! The reconcile kit every controller is built from: what a controller needs besides its own
//! validate, build and status.
//!
//! - [`apply`]: children by server-side apply under [`crate::FIELD_MANAGER`], compared first,
//!   orphans deleted, recreated on an immutable change (after Stackable's `ClusterResources`).
//! - [`children`]: the labels, selector and metadata every child carries.
//! - [`conditions`]: conditions built and merged, keeping transition times.
//! - [`status`]: one status patch, written only when the status changed; Ready=False with the
//!   error of a failed reconcile.
//! - [`events`]: one Event publisher.
//! - [`echo`]: the operator's own writes, whose echo in a watch triggers no reconcile.
//! - [`run`]: the finalizer wrapper, the error policy and the controller run loop.
//!
//! The helpers take a [`Kit`], not a controller's context: a controller's context holds one, so
//! a new controller needs no copy of the plumbing.

pub mod apply;
pub mod children;
pub mod conditions;
pub mod echo;
pub mod events;
pub mod run;
pub mod status;

use std::sync::Arc;

use kube::Client;

use crate::clock::Clock;
use crate::metrics::Metrics;

/// What every controller's context holds for the kit's helpers.
#[derive(Clone)]
pub struct Kit {
    /// The API client.
    pub client: Client,
    /// Metrics, shared with the HTTP server: every write is counted.
    pub metrics: Arc<Metrics>,
    /// Publishes Events.
    pub events: events::Publisher,
    /// The clock of condition transition times.
    pub clock: Arc<dyn Clock>,
    /// What the controller's own writes left, so that their echo triggers nothing.
    pub writes: Arc<echo::OwnWrites>,
}

impl std::fmt::Debug for Kit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit").finish_non_exhaustive()
    }
}

impl Kit {
    /// A kit whose Events name `instance` as the reporting instance.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        instance: &str,
    ) -> Self {
        let events = events::Publisher::new(client.clone(), metrics.clone(), instance);
        Self {
            client,
            metrics,
            events,
            clock,
            writes: Arc::default(),
        }
    }
}
