//! Prometheus metrics: reconciles, failures by reason, reconcile duration and API writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-controller metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `factory`, later `workspace` and `jupyter`.
    pub controller: String,
}

/// Labels of failure counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The controller that failed.
    pub controller: String,
    /// The error's short label ([`crate::Error::metric_label`]).
    pub reason: String,
}

/// Labels of API write counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// What was written: `node`, `storageclass`, `configmap`, `status`, `event`, ...
    pub kind: String,
    /// `apply`, `patch`, `create` or `delete`.
    pub verb: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    writes: Family<WriteLabels, Counter>,
    writes_total: AtomicU64,
    /// GPU-hours used and granted per workspace.
    pub allocations: crate::tenancy::allocation::gauges::Gauges,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fabbrica_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.005, 2.0, 14))) as fn() -> Histogram,
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            duration.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server, by kind and verb",
            writes.clone(),
        );
        let allocations = crate::tenancy::allocation::gauges::Gauges::register(&mut registry);
        Self {
            allocations,
            registry,
            reconciles,
            failures,
            duration,
            writes,
            writes_total: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// A new set of metrics, shared between the controllers and the HTTP server.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes a controller's series visible at zero before its first reconcile.
    pub fn register_controller(&self, controller: &str) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        drop(self.reconciles.get_or_create(&labels));
        drop(self.duration.get_or_create(&labels));
    }

    /// Starts timing a reconcile; the reconcile is counted and its duration observed when the guard drops.
    pub fn reconcile(&self, controller: &str) -> ReconcileTimer<'_> {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self,
            labels,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, controller: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                controller: controller.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts one write to the API server.
    pub fn write(&self, kind: &str, verb: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.into(),
                verb: verb.into(),
            })
            .inc();
        self.writes_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Every write counted so far.
    pub fn writes_total(&self) -> u64 {
        self.writes_total.load(Ordering::Relaxed)
    }

    /// Reconciles counted so far for one controller.
    pub fn reconciles_total(&self, controller: &str) -> u64 {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Observes a reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    labels: ControllerLabels,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::new();
        drop(metrics.reconcile("factory"));
        metrics.failure("factory", "kube_api");
        metrics.write("node", "apply");
        let text = metrics.encode();
        for name in [
            "fabbrica_operator_reconciles_total{controller=\"factory\"} 1",
            "fabbrica_operator_reconcile_failures_total{controller=\"factory\",reason=\"kube_api\"} 1",
            "fabbrica_operator_reconcile_duration_seconds_count{controller=\"factory\"} 1",
            "fabbrica_operator_api_writes_total{kind=\"node\",verb=\"apply\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert_eq!(metrics.writes_total(), 1);
    }
}
