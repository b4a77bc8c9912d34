//! One Event publisher for every controller.

use std::sync::Arc;

use fabbrica_crds::labels;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use crate::metrics::Metrics;

/// Publishes Events as `fabbrica-operator`, naming this instance; counts each in the metrics.
#[derive(Clone)]
pub struct Publisher {
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher whose Events name `instance` as the reporting instance.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: &str) -> Self {
        let reporter = Reporter {
            controller: labels::MANAGER.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            metrics,
        }
    }

    /// Publishes an Event about `object`; a failure is logged, never fatal.
    pub async fn publish<K>(&self, object: &K, type_: EventType, reason: &str, note: String)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        // An Event about a cluster-scoped object (Factory, Workspace) goes to `default` and
        // leaves the reference's namespace empty, as Kubernetes records Events about Nodes.
        let reference = object.object_ref(&());
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => self.metrics.write("event", "create"),
            Err(err) => warn!(error = %err, "publishing an Event failed"),
        }
    }
}
