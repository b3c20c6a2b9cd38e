//! The provisioner's HTTP API (axum): routes, shared state and the layers around them.
//!
//! - [`session`]: `POST /session`, `GET|DELETE /session/{id}`, `POST /session/{id}/kill`.
//! - [`ops`]: `GET /pool`, `/info`, `/health`, `/ready`, `/metrics`; [`events`]: `GET /pool/events`.
//! - [`guard`]: what every request must pass first (host, origin, per-client rate) and who its client is.
//! - [`auth`]: who may act on a session (the token check); [`error`]: how the pool's refusals become the
//!   shared error answers.
//!
//! Layers, outermost first: request id, log and duration ([`common::http::observe`]), CORS (origin allowlist), JSON-ifying of layer errors, the host
//! guard, the request body's deadline and size limit; the session routes add the origin and rate guard.

pub mod auth;
pub mod error;
pub mod events;
pub mod guard;
pub mod ops;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{get, post};
use common::client::{ClientFlags, ClientKey, ClientShares};
use common::signing::SigningKey;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;

use crate::backend::Backend;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pool::Pool;
use guard::Hosts;

/// State shared by every request.
pub struct ApiState<B> {
    /// The warm pool.
    pub pool: Arc<Pool<B>>,
    /// The key session tokens are derived with (shared by every replica).
    pub key: SigningKey,
    /// Metrics for `/metrics` and rejections.
    pub metrics: Arc<Metrics>,
    /// How clients are told apart.
    pub clients: ClientFlags,
    /// Per-client limiter for `POST /session`.
    pub session_limiter: DefaultKeyedRateLimiter<ClientKey>,
    /// Per-client limiter for every API request.
    pub request_limiter: DefaultKeyedRateLimiter<ClientKey>,
    /// Browser origins allowed to use session endpoints.
    pub allowed_origins: Vec<String>,
    /// Whether localhost origins are allowed too.
    pub localhost_origins: bool,
    /// Which `Host`s are answered.
    pub hosts: Hosts,
    /// Open event streams by client.
    pub streams: Arc<ClientShares>,
    /// What `GET /info` answers.
    pub info: common::api::InfoBody,
    /// Cancelled when shutdown begins (`/ready` turns 503).
    pub draining: CancellationToken,
}

impl<B: Backend> ApiState<B> {
    /// State from the configuration.
    pub fn new(
        config: &Config,
        pool: Arc<Pool<B>>,
        key: SigningKey,
        metrics: Arc<Metrics>,
        draining: CancellationToken,
    ) -> Self {
        let period = Duration::from_secs(60) / config.sessions_per_minute.get();
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_minute(config.sessions_per_minute))
            .allow_burst(config.session_burst);
        Self {
            pool,
            key,
            metrics,
            clients: config.client.clone(),
            session_limiter: RateLimiter::keyed(quota),
            request_limiter: RateLimiter::keyed(Quota::per_second(config.requests_per_second)),
            allowed_origins: origins(config),
            localhost_origins: !config.no_localhost_origins,
            hosts: Hosts::new(&config.allowed_hosts, config.bind.is_loopback()),
            streams: ClientShares::new(config.max_streams_per_client),
            info: common::api::InfoBody {
                shared: config.shared_urls.clone(),
            },
            draining,
        }
    }
}

/// The router with every route and layer.
pub fn router<B: Backend>(state: Arc<ApiState<B>>, config: &Config) -> Router {
    let sessions = Router::new()
        .route("/session", post(session::create::<B>))
        .route("/session/{id}", get(session::get::<B>).delete(session::end::<B>))
        .route("/session/{id}/kill", post(session::kill::<B>))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::sessions::<B>,
        ));
    let routes = Router::new()
        .merge(sessions)
        .route("/pool", get(ops::pool::<B>))
        .route("/pool/events", get(events::pool_events::<B>))
        .route("/info", get(ops::info::<B>))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready::<B>))
        .route("/metrics", get(ops::metrics::<B>));
    let routes = match &config.static_dir {
        // The page and its assets; anything else is the API's JSON 404.
        Some(dir) => routes.fallback_service(
            ServeDir::new(dir)
                .not_found_service(axum::routing::any(ops::not_found).with_state(state.clone())),
        ),
        None => routes.fallback(ops::not_found),
    };
    let routes = routes
        .method_not_allowed_fallback(ops::method_not_allowed)
        // Cross-origin isolation gives the page fine-grained timers (`performance.now()` at 5 µs, not 100 µs).
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("cross-origin-embedder-policy"),
            HeaderValue::from_static("require-corp"),
        ))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(RequestBodyDeadlineLayer::new(config.body_read_timeout))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::hosts::<B>,
        ))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(cors(config));
    common::http::observe(routes, state.metrics.http.clone()).with_state(state)
}

/// The configured browser origins, normalised.
fn origins(config: &Config) -> Vec<String> {
    config
        .allowed_origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect()
}

/// CORS for browsers: the configured origins, plus localhost unless disabled.
fn cors(config: &Config) -> CorsLayer {
    let allowed = origins(config);
    let localhost = !config.no_localhost_origins;
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin
                .to_str()
                .is_ok_and(|origin| common::origin::allowed(origin, &allowed, localhost))
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod router_tests {
    //! Router-level tests with `oneshot`: no socket, a fake backend, the real layers.
    use super::*;
    use crate::backend::fake::FakeBackend;
    use crate::pool::PoolConfig;
    use axum::body::{Body, to_bytes};
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode};
    use clap::Parser;
    use std::net::SocketAddr;
    use tower::ServiceExt;

    fn app(flags: &[&str]) -> (Router, CancellationToken) {
        let mut args = vec!["provisioner"];
        args.extend_from_slice(flags);
        let config = Config::try_parse_from(args).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::default());
        let pool = Pool::new(FakeBackend::new(tx), PoolConfig::default(), metrics.clone());
        let draining = CancellationToken::new();
        tokio::spawn(pool.clone().run(rx, draining.clone()));
        let key = crate::ids::random_key();
        let state = Arc::new(ApiState::new(&config, pool, key, metrics, draining.clone()));
        (router(state, &config), draining)
    }

    /// Sends a request from 127.0.0.1 with an optional bearer token; returns the status and the JSON body.
    async fn send(
        app: &Router,
        method: Method,
        uri: &str,
        token: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn only_a_sessions_own_token_opens_it_and_unknown_ids_stay_hidden() {
        let (app, _) = app(&[]);
        let (status, a) = send(&app, Method::POST, "/session", None).await;
        assert_eq!(status, StatusCode::CREATED, "{a}");
        let (_, b) = send(&app, Method::POST, "/session", None).await;
        let (a_id, a_token) = (a["session_id"].as_str().unwrap(), a["token"].as_str().unwrap());
        let b_token = b["token"].as_str().unwrap();
        let a_path = format!("/session/{a_id}");
        let a_kill = format!("/session/{a_id}/kill");
        // Another session's token, no token, a blank or malformed header: 401 on every endpoint.
        for (method, uri) in [
            (Method::GET, &a_path),
            (Method::POST, &a_kill),
            (Method::DELETE, &a_path),
        ] {
            for token in [Some(b_token), None, Some(""), Some("x".repeat(300).as_str())] {
                let (status, body) = send(&app, method.clone(), uri, token).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} with {token:?}: {body}"
                );
                assert_eq!(body["error"], "unauthorized");
            }
        }
        // Without the right token nobody learns whether a session exists; with it, an unknown id is 404.
        let (status, _) = send(&app, Method::GET, "/session/nope", Some(a_token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = send(&app, Method::GET, &a_path, Some(a_token)).await;
        assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("active")));
        let (status, _) = send(&app, Method::DELETE, &a_path, Some(a_token)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = send(&app, Method::POST, &a_kill, Some(a_token)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::CONFLICT, Some("session_ended"))
        );
    }

    #[tokio::test]
    async fn with_its_token_an_unknown_session_is_not_found() {
        let config = Config::try_parse_from(["provisioner"]).unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::default());
        let pool = Pool::new(FakeBackend::new(tx), PoolConfig::default(), metrics.clone());
        let key = crate::ids::random_key();
        let token = key.session_token("nope");
        let state = Arc::new(ApiState::new(
            &config,
            pool,
            key,
            metrics,
            CancellationToken::new(),
        ));
        let app = router(state, &config);
        for (method, uri) in [
            (Method::GET, "/session/nope"),
            (Method::POST, "/session/nope/kill"),
            (Method::DELETE, "/session/nope"),
        ] {
            let (status, body) = send(&app, method, uri, Some(&token)).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::NOT_FOUND, Some("session_not_found")),
                "{uri}"
            );
        }
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = app
            .clone()
            .oneshot(
                Request::get(uri)
                    .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            to_bytes(body, 1 << 20).await.unwrap().to_vec(),
        )
    }

    #[tokio::test]
    async fn ready_turns_503_while_draining_and_health_stays_ok() {
        let (app, draining) = app(&[]);
        assert_eq!(get(&app, "/ready").await.0, StatusCode::OK);
        draining.cancel();
        let (status, _, body) = get(&app, "/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"],
            "draining"
        );
        assert_eq!(get(&app, "/health").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn serves_the_page_with_cross_origin_isolation_and_json_404s() {
        let dir = std::env::temp_dir().join(format!("provisioner-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<html>page</html>").unwrap();
        let (app, _) = app(&["--static-dir", dir.to_str().unwrap()]);
        let (status, headers, body) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"<html>page</html>");
        assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
        assert_eq!(headers["cross-origin-embedder-policy"], "require-corp");
        let (status, _, body) = get(&app, "/no-such-file.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"],
            "not_found"
        );
        let (status, _, body) = get(&app, "/pool").await;
        assert_eq!(status, StatusCode::OK, "API routes win over static files");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["target"],
            2
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
