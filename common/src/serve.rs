//! Serving an axum `Router` over HTTP/1 and HTTP/2 the way `axum::serve` does — per-connection tasks,
//! upgrades (WebSockets), `ConnectInfo<SocketAddr>`, graceful shutdown — plus the deadlines `axum::serve` cannot
//! be told about, so a slow or silent client cannot hold a connection and its task:
//!
//! - a connection must complete its first request head within [`Limits::header_read_timeout`]: one that sends
//!   nothing, half an HTTP/2 preface, or a request line and then a header byte a minute ("slowloris") is
//!   closed. hyper enforces the HTTP/1 part itself once given a timer (axum gives it none), but the version
//!   detection that comes before it waits for ever, so the first request is watched here;
//! - graceful shutdown waits at most [`Limits::shutdown_timeout`] for requests in flight, whatever clients do.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::util::MapRequestLayer;

/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// The deadlines of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection whose (first) request head is not complete within this long is closed.
    pub header_read_timeout: Duration,
    /// Once shutdown begins, requests still in flight get at most this long.
    pub shutdown_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits, at most
/// `limits.shutdown_timeout`, for in-flight HTTP requests (upgraded WebSockets are the caller's to close).
pub async fn serve<L>(mut listener: L, app: Router, limits: Limits, shutdown: impl Future<Output = ()>)
where
    L: Listener<Addr = SocketAddr>,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let first_request = Arc::new(AtomicBool::new(false));
        let seen = first_request.clone();
        let service =
            TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo(address))).layer(
                MapRequestLayer::new(move |request| {
                    seen.store(true, Ordering::Relaxed);
                    request
                }),
            ));
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // Request heads over 32 KiB get 431 from hyper (default ~400 KiB): bounds what one slow or
            // hostile connection can make the server buffer.
            .max_buf_size(MAX_HEAD_BYTES);
        builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // Resolves only if no request has arrived by the deadline; once one has, it never does.
            let silent = async {
                tokio::time::sleep(header_read_timeout).await;
                if first_request.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %address, "connection ended with an error");
                    }
                }
                () = silent => tracing::debug!(%address, "no request in time; connection closed"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?limits.shutdown_timeout,
            "requests still in flight after the shutdown timeout; stopping anyway"
        );
    }
}
