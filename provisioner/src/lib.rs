//! The resume-showcase session provisioner.
//!
//! It keeps a warm pool of ready ping-server pods, hands one to each browser session in milliseconds, replaces
//! killed pods, and never lets the pod count run away. Layering, outside in:
//!
//! - [`run`] wires everything and owns the lifecycle (serve, drain, terminate every pod on the way out).
//! - [`api`] is HTTP: routes, auth, errors, CORS, limits.
//! - [`pool`] is the one warm-pool algorithm, over the [`backend::Backend`] trait.
//! - [`backend`] runs pods: [`backend::local`] as child processes.
//! - [`config`], [`ids`], [`metrics`]: flags, secrets, Prometheus.

pub mod api;
pub mod backend;
pub mod config;
pub mod ids;
pub mod metrics;
pub mod pool;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use backend::Backend;
use backend::local::{LocalBackend, LocalConfig};
use config::BackendKind;
pub use config::Config;

/// Runs the provisioner on `listener` until `shutdown` resolves; then stops accepting, finishes in-flight
/// requests, and terminates every pod before returning.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match config.backend {
        BackendKind::Local => {
            let server_bin = config
                .server_bin
                .clone()
                .or_else(LocalConfig::sibling_server_bin)
                .context("cannot find the `server` binary next to the provisioner; pass --server-bin")?;
            let (events, receiver) = mpsc::unbounded_channel();
            let backend = LocalBackend::new(
                LocalConfig {
                    server_bin,
                    public_host: config.public_host.clone(),
                    start_timeout: config.pod_start_timeout,
                    allowed_origins: config.allowed_origins.clone(),
                    localhost_origins: !config.no_localhost_origins,
                },
                events,
            )?;
            serve(config, listener, backend, receiver, shutdown).await
        }
    }
}

/// Serves the API over `backend` (generic, so every backend shares this wiring).
pub async fn serve<B: Backend>(
    config: Config,
    listener: TcpListener,
    backend: B,
    events: mpsc::UnboundedReceiver<backend::PodEvent>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    let pool = pool::Pool::new(backend, config.pool(), config.signing_key()?, metrics.clone());
    let draining = CancellationToken::new();
    let pool_loop = tokio::spawn(pool.clone().run(events, draining.clone()));
    let state = Arc::new(api::ApiState::new(
        &config,
        pool.clone(),
        metrics,
        draining.clone(),
    ));
    let app = api::router(state, &config);

    tracing::info!(
        address = %listener.local_addr()?,
        warm_pool_size = config.warm_pool_size,
        max_sessions = config.max_sessions,
        backend = ?config.backend,
        "provisioner listening"
    );
    let stop = {
        let draining = draining.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown signal received");
            draining.cancel();
        }
    };
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stop)
        .await;
    draining.cancel();
    if let Err(e) = pool_loop.await {
        tracing::warn!(error = %e, "pool loop failed");
    }
    pool.shutdown().await;
    tracing::info!("provisioner stopped; every pod terminated");
    served.context("HTTP server failed")
}
