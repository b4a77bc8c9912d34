//! The fabbrica operator: controllers that make declared factories true on a cluster.
//!
//! [`run`] is the whole operator for a given client: it checks that the CRDs are served, starts the
//! Node watch, waits until it has listed every Node, then runs the controllers until told to
//! stop. The binary adds flags, logs, the HTTP server and leader election around it.

pub mod cli;
pub mod clock;
pub mod conditions;
pub mod error;
pub mod factory;
pub mod health;
pub mod http;
pub mod interned;
pub mod leader;
pub mod maintenance;
pub mod metrics;
pub mod nodes;
pub mod owners;
pub mod reconcile;
pub mod telemetry;
pub mod tenancy;
pub mod watched;

use std::sync::Arc;
use std::time::Duration;

use fabbrica_crds::v1alpha1::Factory;
use kube::api::ListParams;
use kube::{Api, Client};

pub use error::{Error, Result};

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "fabbrica-operator";

/// What the controllers write where.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the topology ConfigMap and the NetworkAttachmentDefinitions.
    pub namespace: String,
    /// Namespace of the GPU Operator's device-plugin ConfigMap.
    pub gpu_operator_namespace: String,
    /// Reconcile only Factories matching this label selector.
    pub factory_selector: Option<String>,
    /// Node writes in flight at once.
    pub node_concurrency: usize,
    /// Quiet time before a reconcile after a change.
    pub debounce: Duration,
    /// This instance's name in Events.
    pub reporter: String,
    /// How often a running Maintenance looks at its Nodes again.
    pub maintenance_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "fabbrica-system".into(),
            gpu_operator_namespace: "gpu-operator".into(),
            factory_selector: None,
            node_concurrency: 16,
            debounce: Duration::from_millis(200),
            reporter: "fabbrica-operator".into(),
            maintenance_poll: Duration::from_secs(5),
        }
    }
}

/// Fails with installation instructions when the fabbrica CRDs are not served.
pub async fn check_crds(client: &Client) -> Result<()> {
    match Api::<Factory>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(Error::CrdsMissing(
            "factories.fabbrica.io/v1alpha1 is not found".into(),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Runs the operator with `client` until `shutdown` completes.
///
/// `readiness` turns true once the Node watch has listed every Node and the controllers start.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<metrics::Metrics>,
    readiness: Arc<http::Readiness>,
    clock: Arc<dyn clock::Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    check_crds(&client).await?;
    let index = Arc::new(nodes::NodeIndex::default());
    let (trigger, triggers) = futures::channel::mpsc::unbounded();
    let watch = nodes::spawn_watch(client.clone(), index.clone(), trigger);
    while !index.synced() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        nodes = index.len(),
        "node watch synced; starting controllers"
    );
    readiness.set(true);
    let shutdown = futures::FutureExt::shared(shutdown);
    let tenancy = tenancy::run(
        client.clone(),
        metrics.clone(),
        clock.clone(),
        &settings,
        shutdown.clone(),
    );
    let maintenance = maintenance::run(
        Arc::new(maintenance::Context::new(
            client.clone(),
            &settings,
            metrics.clone(),
            clock.clone(),
        )),
        shutdown.clone(),
    );
    let ctx = Arc::new(factory::Context::new(
        client, settings, metrics, index, clock,
    ));
    futures::join!(factory::run(ctx, triggers, shutdown), tenancy, maintenance);
    readiness.set(false);
    watch.abort();
    tracing::info!("controllers stopped");
    Ok(())
}
