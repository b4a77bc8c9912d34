//! Command-line flags and environment of the `fabbrica-operator` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use crate::Settings;

/// Reconciles fabbrica Factories into GPU node pools, fabric topology and storage tiers.
#[derive(Debug, Parser)]
#[command(name = "fabbrica-operator", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub election: ElectionArgs,
    #[command(flatten)]
    pub reconcile: ReconcileArgs,
}

/// How to reach the cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long)]
    pub context: Option<String>,
}

/// Metrics, probes and logs.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "FABBRICA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "FABBRICA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Leader election, for running more than one replica.
#[derive(Debug, Args)]
pub struct ElectionArgs {
    /// Take a coordination.k8s.io/v1 Lease before reconciling; needed with more than one replica.
    #[arg(long, env = "FABBRICA_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "fabbrica-system")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "fabbrica-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// What the controllers write where.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Namespace of the topology ConfigMap and the NetworkAttachmentDefinitions.
    #[arg(long, env = "FABBRICA_NAMESPACE", default_value = "fabbrica-system")]
    pub namespace: String,
    /// Namespace of the NVIDIA GPU Operator, where its device-plugin ConfigMap goes.
    #[arg(
        long,
        env = "FABBRICA_GPU_OPERATOR_NAMESPACE",
        default_value = "gpu-operator"
    )]
    pub gpu_operator_namespace: String,
    /// Reconcile only the Factories matching this label selector (sharding, canaries).
    #[arg(long, env = "FABBRICA_FACTORY_SELECTOR")]
    pub factory_selector: Option<String>,
    /// Node writes in flight at once; higher converges faster and loads the API server more.
    #[arg(long, default_value_t = 16)]
    pub node_concurrency: usize,
    /// Quiet time before a reconcile after a change, so a burst of Node events makes one reconcile
    /// (changes closer together than this keep delaying it).
    #[arg(long, default_value = "200", value_name = "MILLISECONDS")]
    pub debounce_ms: u64,
    /// How often a running Maintenance looks at its Nodes again (drains, agents' signals, the
    /// pools' budgets).
    #[arg(long, default_value = "5000", value_name = "MILLISECONDS")]
    pub maintenance_poll_ms: u64,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The controllers' settings from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            namespace: self.reconcile.namespace.clone(),
            gpu_operator_namespace: self.reconcile.gpu_operator_namespace.clone(),
            factory_selector: self.reconcile.factory_selector.clone(),
            node_concurrency: self.reconcile.node_concurrency.max(1),
            debounce: Duration::from_millis(self.reconcile.debounce_ms),
            maintenance_poll: Duration::from_millis(self.reconcile.maintenance_poll_ms.max(100)),
            reporter: self
                .election
                .identity
                .clone()
                .unwrap_or_else(|| "fabbrica-operator".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_serve_metrics_on_8080() {
        let cli = Cli::try_parse_from(["fabbrica-operator"]).unwrap();
        assert_eq!(cli.serve.metrics_addr.port(), 8080);
        assert_eq!(cli.serve.log_format, LogFormat::Text);
        assert!(!cli.election.leader_elect);
        assert_eq!(cli.settings().node_concurrency, 16);
    }
}
