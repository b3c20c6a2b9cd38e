//! What every HTTP request of both services gets, at default settings:
//!
//! - a request id: the client's `x-request-id` when it is a sane one (at most 64 characters of `A-Za-z0-9`,
//!   `-`, `_`, `.`), a new UUID otherwise; returned in the answer's `x-request-id`;
//! - a span (`request`, with method, route and id) around everything the request logs, so the id appears in
//!   every line it causes;
//! - one line when it is answered: `info`, or `warn` for a 5xx, with status and latency;
//! - its duration in `http_request_duration_seconds` ([`crate::metrics::HttpMetrics`]).
//!
//! Neither the raw path nor the query is ever logged or used as a label: the route is the matched template
//! (`/session/{id}`; `fallback` when nothing matched), and the edge's route token travels in the query.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Response};
use axum::middleware::Next;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::metrics::HttpMetrics;

/// The header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Route label and log field of a request no route matched (static files, 404s).
pub const UNMATCHED: &str = "fallback";

/// Wraps every route of `router` (and its fallback) in the request id, span, answer log and duration metric.
pub fn observe<S>(router: Router<S>, metrics: HttpMetrics) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let name = axum::http::HeaderName::from_static(REQUEST_ID);
    router
        .layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            let metrics = metrics.clone();
            async move {
                let route = route(&request).to_owned();
                let started = Instant::now();
                let response = next.run(request).await;
                metrics.observe(&route, response.status(), started.elapsed().as_secs_f64());
                response
            }
        }))
        .layer(PropagateRequestIdLayer::new(name.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        route = %route(request),
                        request_id = %id,
                    )
                })
                .on_request(())
                .on_response(|response: &Response<_>, latency: Duration, _span: &Span| {
                    let status = response.status().as_u16();
                    let ms = latency.as_secs_f64() * 1000.0;
                    if response.status().is_server_error() {
                        tracing::warn!(status, latency_ms = ms, "answered");
                    } else {
                        tracing::info!(status, latency_ms = ms, "answered");
                    }
                })
                // The answer's line above already says 5xx at `warn`; the default would add an `error` line.
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(name, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_bad_request_id))
}

/// The matched route template, or [`UNMATCHED`].
fn route<B>(request: &axum::http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
}

/// Removes a client's `x-request-id` that is too long or has characters a log reader would trip on, so a new
/// one is made.
async fn drop_bad_request_id(mut request: Request) -> Request {
    if request.headers().get(REQUEST_ID).is_some_and(|id| !sane_id(id)) {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

fn sane_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
