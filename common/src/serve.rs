//! Serving an axum `Router` over HTTP/1 and HTTP/2 the way `axum::serve` does — per-connection tasks,
//! upgrades (WebSockets), `ConnectInfo<SocketAddr>`, graceful shutdown — plus what `axum::serve` cannot be
//! told: a deadline for a request's headers. Without one, a client that sends a request line and then a
//! header byte a minute ("slowloris") holds its connection and task forever; hyper enforces the deadline
//! only when given a timer, which axum does not give it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for in-flight HTTP
/// requests (upgraded WebSockets are the caller's to close). A connection whose request headers are not
/// complete within `header_timeout` is closed.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo(address))));
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            // Request heads over 32 KiB get 431 from hyper (default ~400 KiB): bounds what one slow or
            // hostile connection can make the server buffer.
            .max_buf_size(MAX_HEAD_BYTES);
        builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %address, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
