//! The resume-showcase session provisioner.
//!
//! It keeps a warm pool of ready ping-server pods, hands one to each browser session in milliseconds, replaces
//! killed pods, and never lets the pod count run away. Layering, outside in:
//!
//! - [`run`] wires everything and owns the lifecycle (serve, drain, terminate every pod on the way out).
//! - [`api`] is HTTP: routes, auth, errors, CORS, limits.
//! - [`pool`] is the one warm-pool algorithm, over the [`backend::Backend`] trait.
//! - [`backend`] runs pods: [`backend::local`] as child processes, [`backend::kubernetes`] as Jobs.
//! - [`config`], [`ids`], [`metrics`]: flags, secrets, Prometheus.

pub mod api;
pub mod backend;
pub mod config;
pub mod ids;
pub mod metrics;
pub mod pool;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use backend::Backend;
use backend::kubernetes::manifest::SessionPodSpec;
use backend::kubernetes::{KubeSettings, KubernetesBackend};
use backend::local::{LocalBackend, LocalConfig};
use common::signing::SigningKey;
use config::BackendKind;
pub use config::Config;

/// Runs the provisioner on `listener` until `shutdown` resolves; then stops accepting, finishes in-flight
/// requests, and terminates every pod before returning.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let key = config.signing_key()?;
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
            serve(config, key, listener, backend, receiver, shutdown).await
        }
        BackendKind::Kubernetes => {
            // kube's TLS uses rustls' process-wide provider; pick one explicitly, whatever features the
            // build unified.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = kube::Client::try_default()
                .await
                .context("cannot configure a Kubernetes client (in-cluster or KUBECONFIG)")?;
            let settings = kube_settings(&config, client.default_namespace())?;
            let (events, receiver) = mpsc::unbounded_channel();
            let backend = KubernetesBackend::start(client, settings, events).await?;
            serve(config, key, listener, backend, receiver, shutdown).await
        }
    }
}

/// The Kubernetes backend's settings from the flags.
pub fn kube_settings(config: &Config, default_namespace: &str) -> anyhow::Result<KubeSettings> {
    let k = &config.kubernetes;
    let secs = |d: std::time::Duration| d.as_secs();
    Ok(KubeSettings {
        namespace: k
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_owned()),
        pod: SessionPodSpec {
            image: k.session_image.clone(),
            image_pull_policy: k.session_image_pull_policy.clone(),
            image_pull_secrets: k.session_image_pull_secrets.clone(),
            port: k.session_port,
            cpu_request: k.session_cpu_request.clone(),
            memory_request: k.session_memory_request.clone(),
            cpu_limit: k.session_cpu_limit.clone(),
            memory_limit: k.session_memory_limit.clone(),
            active_deadline_seconds: i64::try_from(secs(k.warm_pod_max_age)).unwrap_or(i64::MAX),
            ttl_seconds_after_finished: i32::try_from(secs(k.session_ttl_after_finished)).unwrap_or(i32::MAX),
            allowed_origins: config.allowed_origins.clone(),
            extra_labels: k.session_labels.iter().cloned().collect(),
            owner: None,
            template: k.session_pod_template.clone(),
        },
        edge_url: k
            .edge_url
            .clone()
            .context("--edge-url is required with --backend kubernetes")?,
        route_ttl: k.route_ttl,
        key: config.route_key()?,
        session_max_age: config.session_max_age,
        owner: k.session_owner.clone(),
    })
}

/// Serves the API over `backend` (generic, so every backend shares this wiring); session tokens are derived
/// with `key`.
pub async fn serve<B: Backend>(
    config: Config,
    key: SigningKey,
    listener: TcpListener,
    backend: B,
    events: mpsc::UnboundedReceiver<backend::PodEvent>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    let pool = pool::Pool::new(backend, config.pool(), metrics.clone());
    // Two stages of stopping: `draining` turns `/ready` 503 while everything keeps working (for the drain
    // delay, so load balancers move on); `stopping` ends the pool's loop once no request is in flight.
    let draining = CancellationToken::new();
    let stopping = CancellationToken::new();
    let pool_loop = tokio::spawn(pool.clone().run(events, stopping.clone()));
    let state = Arc::new(api::ApiState::new(
        &config,
        pool.clone(),
        key,
        metrics,
        draining.clone(),
    ));
    tokio::spawn(api::guard::prune(state.clone(), stopping.clone()));
    let app = api::router(state, &config);

    tracing::info!(
        address = %listener.local_addr()?,
        warm_pool_size = config.warm_pool_size,
        max_sessions = config.max_sessions,
        backend = ?config.backend,
        "provisioner listening"
    );
    let drain_delay = config.drain_delay;
    let stop_accepting = {
        let draining = draining.clone();
        async move {
            shutdown.await;
            tracing::info!(?drain_delay, "shutdown signal received; draining");
            draining.cancel();
            tokio::time::sleep(drain_delay).await;
        }
    };
    let limits = common::serve::Limits {
        header_read_timeout: config.header_read_timeout,
        shutdown_timeout: config.shutdown_timeout,
    };
    common::serve::serve(listener, app, limits, stop_accepting).await;
    draining.cancel();
    stopping.cancel();
    if let Err(e) = pool_loop.await {
        tracing::warn!(error = %e, "pool loop failed");
    }
    pool.shutdown().await;
    tracing::info!("provisioner stopped; every pod terminated");
    Ok(())
}
