//! Per-workspace allocation metrics: GPU-hours used and granted, GPUs running, and whether the
//! allocation is closed.

use std::sync::atomic::AtomicU64;

use fabbrica_crds::v1alpha1::AllocationStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of per-workspace metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkspaceLabels {
    /// The Workspace.
    pub workspace: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The per-workspace gauges, registered with the operator's other metrics.
#[derive(Debug, Default)]
pub struct Gauges {
    used: Family<WorkspaceLabels, FloatGauge>,
    granted: Family<WorkspaceLabels, FloatGauge>,
    running: Family<WorkspaceLabels, Gauge>,
    closed: Family<WorkspaceLabels, Gauge>,
}

impl Gauges {
    /// Creates the gauges and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let gauges = Self::default();
        registry.register(
            "workspace_gpu_hours_used",
            "GPU-hours a workspace used in its allocation's period (all of them without one)",
            gauges.used.clone(),
        );
        registry.register(
            "workspace_gpu_hours_granted",
            "GPU-hours a workspace's allocation grants",
            gauges.granted.clone(),
        );
        registry.register(
            "workspace_gpus_running",
            "GPUs held by a workspace's running Pods",
            gauges.running.clone(),
        );
        registry.register(
            "workspace_allocation_closed",
            "1 while a workspace's allocation refuses new GPU work (not started, used up or ended)",
            gauges.closed.clone(),
        );
        gauges
    }

    /// Records a workspace's allocation status.
    pub fn set(&self, workspace: &str, status: &AllocationStatus) {
        let labels = WorkspaceLabels {
            workspace: workspace.to_owned(),
        };
        self.used.get_or_create(&labels).set(status.used_gpu_hours);
        if let Some(granted) = status.granted_gpu_hours {
            self.granted.get_or_create(&labels).set(granted);
        } else {
            self.granted.remove(&labels);
        }
        self.running
            .get_or_create(&labels)
            .set(i64::try_from(status.running_gpus).unwrap_or(i64::MAX));
        self.closed
            .get_or_create(&labels)
            .set(i64::from(status.state.closed()));
    }

    /// Forgets a deleted workspace.
    pub fn remove(&self, workspace: &str) {
        let labels = WorkspaceLabels {
            workspace: workspace.to_owned(),
        };
        self.used.remove(&labels);
        self.granted.remove(&labels);
        self.running.remove(&labels);
        self.closed.remove(&labels);
    }
}
