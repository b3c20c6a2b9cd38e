//! What a request must pass before any handler works on it, in order: the `Host` it names (a provisioner on a
//! loopback address answers only to loopback names, so a DNS-rebinding page cannot reach it), the browser
//! `Origin` of session requests (CORS only hides answers; this refuses the request itself, so no other site can
//! spend the demo's sessions through its visitors' browsers), and a per-client rate limit. The client is found
//! once, here, and handed to the handlers as a [`Client`].
//!
//! The rate limiters keep state per client; [`prune`] forgets clients whose window has passed, so memory stays
//! bounded however many addresses a flood comes from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::api::ApiErrorCode;
use common::client::ClientKey;
use governor::DefaultKeyedRateLimiter;
use governor::clock::{Clock, DefaultClock};
use tokio_util::sync::CancellationToken;

use super::ApiState;
use super::error::ApiError;
use crate::backend::Backend;

/// How often the rate limiters forget clients whose window has passed.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// The client of a request, as [`guard`] found it.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub ClientKey);

impl<B: Backend> FromRequestParts<Arc<ApiState<B>>> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState<B>>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(client) = parts.extensions.get::<Client>() {
            return Ok(*client);
        }
        client_of(state, parts).map(Client)
    }
}

fn client_of<B>(state: &ApiState<B>, parts: &Parts) -> Result<ClientKey, ApiError> {
    let ConnectInfo(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .ok_or_else(|| ApiError::new(ApiErrorCode::InternalError, "no peer address"))?;
    Ok(state.clients.client(peer.ip(), &parts.headers))
}

/// Which hosts the API answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hosts {
    /// Any.
    Any,
    /// These, each `name` (any port) or `name:port`.
    Only(Vec<String>),
}

impl Hosts {
    /// The configured list; empty means any host, unless the service is bound to a loopback address, where only
    /// loopback names are answered.
    pub fn new(configured: &[String], loopback: bool) -> Self {
        let configured: Vec<String> = configured
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !configured.is_empty() {
            return Hosts::Only(configured);
        }
        if loopback {
            return Hosts::Only(vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]);
        }
        Hosts::Any
    }

    /// Whether a request for `host` (`name` or `name:port`) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let Hosts::Only(allowed) = self else {
            return true;
        };
        let host = host.to_ascii_lowercase();
        // The name is what comes before the port (IPv6 names are bracketed).
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !name.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host.as_str(),
        };
        allowed
            .iter()
            .any(|entry| *entry == host || ((!entry.contains(':') || entry.ends_with(']')) && entry == name))
    }
}

/// The host a request names: the URI's authority (HTTP/2), else the `Host` header.
fn request_host<'r>(request: &'r Request, headers: &'r HeaderMap) -> Option<&'r str> {
    request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// The guard of every route: the host check.
pub async fn hosts<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = state.hosts == Hosts::Any
        || request_host(&request, request.headers()).is_some_and(|host| state.hosts.allows(host));
    if !allowed {
        state.metrics.reject(ApiErrorCode::HostNotAllowed);
        return ApiError::new(
            ApiErrorCode::HostNotAllowed,
            "this provisioner does not answer to that host name",
        )
        .into_response();
    }
    next.run(request).await
}

/// The guard of the session endpoints: the origin of browser requests, then the client's request rate.
/// Requests without `Origin` are not from browsers and pass the origin check.
pub async fn sessions<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !common::origin::allowed(origin, &state.allowed_origins, state.localhost_origins) {
            state.metrics.reject(ApiErrorCode::OriginNotAllowed);
            return ApiError::new(
                ApiErrorCode::OriginNotAllowed,
                format!("pages from {origin:?} may not use this demo's sessions"),
            )
            .into_response();
        }
    }
    let client = match client_of(&state, &parts) {
        Ok(client) => client,
        Err(error) => return error.into_response(),
    };
    if let Err(refused) = check(&state.request_limiter, client) {
        state.metrics.reject(ApiErrorCode::RateLimited);
        return refused.into_response();
    }
    parts.extensions.insert(Client(client));
    next.run(Request::from_parts(parts, body)).await
}

/// One request of `client` against `limiter`: 429 with `Retry-After` once over its rate.
pub fn check(limiter: &DefaultKeyedRateLimiter<ClientKey>, client: ClientKey) -> Result<(), ApiError> {
    limiter.check_key(&client).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::new(
            ApiErrorCode::RateLimited,
            "too many requests from your address; wait a moment",
        )
        .retry_after(wait)
    })
}

/// Forgets, every few seconds until `stop`, the clients whose rate-limit window has passed.
pub async fn prune<B: Backend>(state: Arc<ApiState<B>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for limiter in [&state.session_limiter, &state.request_limiter] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_by_name_or_name_and_port() {
        let local = Hosts::new(&[], true);
        for host in ["localhost:8081", "127.0.0.1:8081", "LOCALHOST", "[::1]:8081"] {
            assert!(local.allows(host), "{host}");
        }
        for host in [
            "evil.example:8081",
            "evil.example",
            "127.0.0.1.evil.example:8081",
            "",
        ] {
            assert!(!local.allows(host), "{host}");
        }
        assert_eq!(Hosts::new(&[], false), Hosts::Any);
        let exact = Hosts::new(&["demo.example.com:8443".into(), "other.example".into()], true);
        assert!(exact.allows("demo.example.com:8443"));
        assert!(!exact.allows("demo.example.com:9999"));
        assert!(exact.allows("other.example:1"));
        assert!(
            !exact.allows("localhost:8081"),
            "a configured list replaces the loopback default"
        );
    }
}
