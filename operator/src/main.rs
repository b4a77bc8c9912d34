//! The `fabbrica-operator` binary: flags, logs, HTTP server, leader election and signals around
//! [`fabbrica_operator::run`].

use std::sync::Arc;

use anyhow::Context as _;
use axum::http::HeaderValue;
use axum::http::header::USER_AGENT;
use clap::Parser;
use fabbrica_operator::cli::Cli;
use fabbrica_operator::clock::SystemClock;
use fabbrica_operator::http::{self, Readiness};
use fabbrica_operator::leader::{self, LeaseConfig};
use fabbrica_operator::metrics::Metrics;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::watch;

/// With the `dhat-heap` feature every allocation is recorded for a heap profile.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Written when main returns, as it does on SIGTERM.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder().trim_backtraces(Some(48)).build();
    let cli = Cli::parse();
    fabbrica_operator::telemetry::init(cli.serve.log_format);
    let settings = cli.settings();
    let client = client(&cli, &settings.reporter).await?;
    let metrics = Metrics::new();
    let readiness = Arc::new(Readiness::default());
    let (stop, stopped) = watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    let server = tokio::spawn(http::serve(
        cli.serve.metrics_addr,
        metrics.clone(),
        readiness.clone(),
        shutdown(),
    ));
    if cli.election.leader_elect {
        let config = LeaseConfig::new(
            &cli.election.lease_namespace,
            &cli.election.lease_name,
            &settings.reporter,
        );
        // A standby replica is healthy and ready; it only does not reconcile.
        readiness.set(true);
        tokio::select! {
            acquired = leader::acquire(&client, &config) => acquired?,
            () = shutdown() => return Ok(()),
        }
        let run = fabbrica_operator::run(
            client.clone(),
            settings,
            metrics,
            readiness,
            Arc::new(SystemClock),
            shutdown(),
        );
        tokio::select! {
            result = run => result?,
            lost = leader::hold(&client, &config) => return Err(lost).context("stopping: leadership lost"),
        }
    } else {
        fabbrica_operator::run(
            client,
            settings,
            metrics,
            readiness,
            Arc::new(SystemClock),
            shutdown(),
        )
        .await?;
    }
    server.await.context("metrics server task")??;
    Ok(())
}

/// A client whose requests carry `fabbrica-operator/VERSION (IDENTITY)` as their user agent, so
/// the API server's audit log tells the replicas apart.
async fn client(cli: &Cli, identity: &str) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: cli.cluster.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match &cli.cluster.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if cli.cluster.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer()
            .await
            .context("no kubeconfig given and not running in a cluster")?,
    };
    let agent = format!(
        "fabbrica-operator/{} ({identity})",
        env!("CARGO_PKG_VERSION")
    );
    config.headers.push((
        USER_AGENT,
        HeaderValue::from_str(&agent).context("--identity must be printable ASCII")?,
    ));
    Ok(Client::try_from(config)?)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
