//! The resume-showcase ping server.
//!
//! One binary plays two roles: the shared, load-balanced ping servers (a StatefulSet) and the per-session pods
//! the provisioner starts. Layering, outside in:
//!
//! - [`run`] owns the process lifecycle: accept loop, draining, graceful shutdown.
//! - [`admission`] says who gets a WebSocket and with which limits (origin, draining, connection cap, buffer
//!   sizes), for both WebSocket routes.
//! - [`routes`] owns HTTP: `/ws`, `/health`, `/ready`, `/activity`.
//! - [`edge`] routes `/ws/session/{id}` to the session's own pod after checking the provisioner's signed route.
//! - [`connection`] owns one WebSocket from `hello` to close (idle timeout, shutdown goodbye).
//! - [`handler`] owns the protocol rules for one frame (size limit, rate limit, ping → pong), socket-free.
//! - [`activity`] counts connections and remembers the last frame, for the provisioner's idle check.
//! - [`metrics`] is what `/metrics` reports: connections by kind, pings, refusals, relay errors.
//! - [`config`] and [`identity`] say how the process is configured and who it is.

pub mod activity;
pub mod admission;
pub mod config;
pub mod connection;
pub mod edge;
pub mod handler;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod routes;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admission::AppState;
pub use config::Config;

/// Runs the server on `listener` until `shutdown` resolves, then shuts down gracefully:
///
/// 1. `/ready` turns 503, new WebSocket upgrades are refused, every open connection answers what it already
///    received, sends `goodbye shutdown` and closes with 1001;
/// 2. the listener keeps answering HTTP for `drain_delay` (so load balancers see the 503), then stops accepting;
/// 3. open connections get `shutdown_grace` to finish, then the function returns `Ok`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    let edge_key =
        common::signing::SigningKey::from_args(config.route_key.as_ref(), config.route_key_file.as_deref())
            .map_err(|e| anyhow::anyhow!("--route-key / --route-key-file: {e}"))?;
    let state = Arc::new(AppState::new(
        &config,
        edge_key,
        draining.clone(),
        connections.clone(),
    ));
    let app = routes::router(state);

    let address = listener.local_addr()?;
    tracing::info!(%address, pod = %config.resolved_pod_name(), "ping server listening");

    let drain_delay = config.drain_delay;
    let stop_accepting = {
        let draining = draining.clone();
        async move {
            draining.cancelled().await;
            tokio::time::sleep(drain_delay).await;
        }
    };
    let limits = common::serve::Limits {
        header_read_timeout: config.header_read_timeout,
        shutdown_timeout: config.shutdown_grace,
    };
    let server = tokio::spawn(common::serve::serve(
        listener::NoDelay(listener),
        app,
        limits,
        stop_accepting,
    ));

    shutdown.await;
    tracing::info!(?drain_delay, grace = ?config.shutdown_grace, "shutdown signal received, draining");
    draining.cancel();

    let deadline = Instant::now() + drain_delay + config.shutdown_grace;
    match timeout_at(deadline, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after the grace period"),
    }
    connections.close();
    if timeout_at(deadline, connections.wait()).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "WebSocket connections still open after the grace period"
        );
    }
    tracing::info!("ping server stopped");
    Ok(())
}
