//! HTTP routes of the ping server: `/ws`, `/ws/session/{id}` (the edge role, in [`crate::edge`]), `/health`,
//! `/ready`, `/activity` (for the provisioner), and JSON errors for everything else.
//!
//! `/ws` enforces the admission rules before upgrading: only allowed browser origins, no new connections while
//! draining, and at most `max_connections` at once (each connection holds a semaphore permit until its task
//! ends).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::api::{ActivityBody, ErrorBody, HealthBody};
use common::signing::SigningKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tower_http::trace::TraceLayer;

use crate::Config;
use crate::activity::Activity;
use crate::connection::Connection;
use crate::handler::Responder;
use crate::identity::Identity;

/// Read buffer of each WebSocket. tungstenite's default (128 KiB) would make an idle connection cost more than
/// 100 KiB; a message is at most 1 KiB, so 2 KiB reads any of them at once (measured: 7.1 KiB per idle
/// connection in all, against 10.5 KiB with 4 KiB; see BENCHMARKS.md).
pub(crate) const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Hard ceiling on what tungstenite buffers for one message. Messages between the protocol limit and this one
/// get a clean close 1009 from [`crate::handler`]; anything beyond is cut off by tungstenite itself.
pub(crate) const HARD_MESSAGE_CEILING: usize = 64 * 1024;

/// State shared by every request.
pub struct AppState {
    identity: Arc<Identity>,
    max_message_bytes: usize,
    max_pings_per_second: NonZeroU32,
    idle_timeout: Duration,
    connection_slots: Arc<Semaphore>,
    draining: CancellationToken,
    connections: TaskTracker,
    activity: Arc<Activity>,
    allowed_origins: Vec<String>,
    localhost_origins: bool,
    edge_key: Option<SigningKey>,
}

/// What an admitted WebSocket holds for its whole life: a connection slot (counted against
/// `max_connections`) and a token shutdown waits for.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    _tracked: TaskTrackerToken,
}

impl AppState {
    /// Builds the state from the configuration; `draining` is cancelled when shutdown begins and
    /// `connections` tracks every WebSocket task. `edge_key` enables the edge route.
    pub fn new(
        config: &Config,
        edge_key: Option<SigningKey>,
        draining: CancellationToken,
        connections: TaskTracker,
    ) -> Self {
        Self {
            edge_key,
            identity: Arc::new(Identity::from_config(config)),
            max_message_bytes: config.max_message_bytes,
            max_pings_per_second: config.max_pings_per_second,
            idle_timeout: config.idle_timeout,
            connection_slots: Arc::new(Semaphore::new(config.max_connections)),
            draining,
            connections,
            activity: Arc::default(),
            allowed_origins: config.allowed_origins.clone(),
            localhost_origins: !config.no_localhost_origins,
        }
    }
}

impl AppState {
    /// The key that checks route tokens, when this server is an edge.
    pub fn edge_key(&self) -> Option<&SigningKey> {
        self.edge_key.as_ref()
    }

    /// Cancelled when shutdown begins.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Admits one more WebSocket, or refuses with 503 + `Retry-After` (draining, or at the connection limit).
    pub fn admit(&self) -> Result<Admission, Refusal> {
        if self.draining.is_cancelled() {
            return Err(Refusal::busy(
                "draining",
                "this server is shutting down; connect again to reach another one",
            ));
        }
        let Ok(slot) = self.connection_slots.clone().try_acquire_owned() else {
            return Err(Refusal::busy(
                "too_many_connections",
                "this server is at its connection limit; try again shortly",
            ));
        };
        Ok(Admission {
            _slot: slot,
            _tracked: self.connections.token(),
        })
    }
}

/// Browsers apply no CORS to WebSockets: a page on any site could open one here with its user's network
/// position. Only allowed origins may; clients that send no Origin are not browsers and pass.
pub fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !common::origin::allowed(origin, &state.allowed_origins, state.localhost_origins) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!("pages from {origin:?} may not open WebSockets here"),
            ));
        }
    }
    Ok(())
}

/// A refused request, answered as the JSON error body (small, so `Result`s carrying it stay cheap).
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: bool,
}

impl Refusal {
    /// A refusal with this status, error code and sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: false,
        }
    }

    /// 503 with `Retry-After: 1`.
    pub fn busy(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: true,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

impl From<WebSocketUpgradeRejection> for Refusal {
    /// A request to a WebSocket route that is not a valid upgrade: the rejection's status and reason, in the
    /// JSON error body every refusal has.
    fn from(rejection: WebSocketUpgradeRejection) -> Self {
        Self::new(
            rejection.status(),
            "websocket_upgrade_required",
            rejection.body_text(),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.retry_after {
            busy(self.code, &self.message)
        } else {
            error(self.status, self.code, &self.message)
        }
    }
}

/// The router: `/ws`, `/ws/session/{id}` (edge), `/health`, `/ready`, `/activity`, JSON 404/405 for the
/// rest, with request tracing.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/ws/session/{id}", get(crate::edge::session_websocket))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/activity", get(activity))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(refused) = check_origin(&state, &headers) {
        return refused.into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Refusal::from(rejection).into_response(),
    };
    let admission = match state.admit() {
        Ok(admission) => admission,
        Err(busy) => return busy.into_response(),
    };
    let connection = Connection {
        identity: state.identity.clone(),
        responder: Responder::new(
            state.identity.pod.name.as_str().into(),
            state.max_message_bytes,
            state.max_pings_per_second,
        ),
        idle_timeout: state.idle_timeout,
        shutdown: state.draining.clone(),
        activity: state.activity.clone(),
    };
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(HARD_MESSAGE_CEILING.max(state.max_message_bytes))
        .max_frame_size(HARD_MESSAGE_CEILING.max(state.max_message_bytes))
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let _admission = admission;
            connection.run(socket).await;
        })
}

async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok".into() })
}

async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<HealthBody>) {
    if state.draining.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthBody {
                status: "draining".into(),
            }),
        )
    } else {
        (StatusCode::OK, Json(HealthBody { status: "ok".into() }))
    }
}

async fn activity(State(state): State<Arc<AppState>>) -> Json<ActivityBody> {
    Json(state.activity.report())
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; try /ws, /health, /ready or /activity",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint only answers GET",
    )
}

/// A JSON error response.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// 503 with `Retry-After: 1`.
pub fn busy(code: &str, message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    //! Router-level tests with `oneshot`: no socket needed for the plain HTTP endpoints.
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use clap::Parser;
    use tower::ServiceExt;

    fn app() -> (Router, CancellationToken) {
        let config = Config::parse_from(["server", "--pod-name", "test-pod"]);
        let draining = CancellationToken::new();
        let state = AppState::new(&config, None, draining.clone(), TaskTracker::new());
        (router(Arc::new(state)), draining)
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn plain_requests_to_websocket_routes_get_a_json_refusal() {
        let config = Config::parse_from(["server", "--pod-name", "edge-0"]);
        let key = SigningKey::new(vec![7; 32]).unwrap();
        let state = AppState::new(&config, Some(key), CancellationToken::new(), TaskTracker::new());
        let app = router(Arc::new(state));
        for uri in ["/ws", "/ws/session/s1?token=anything"] {
            let (status, body) = get(app.clone(), uri).await;
            assert!(status.is_client_error(), "{uri}: {status}");
            assert_eq!(body["error"], "websocket_upgrade_required", "{uri}: {body}");
        }
    }

    #[tokio::test]
    async fn health_and_ready_follow_draining() {
        let (app, draining) = app();
        assert_eq!(
            get(app.clone(), "/health").await,
            (StatusCode::OK, serde_json::json!({"status":"ok"}))
        );
        assert_eq!(get(app.clone(), "/ready").await.0, StatusCode::OK);
        draining.cancel();
        assert_eq!(
            get(app.clone(), "/ready").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status":"draining"})
            )
        );
        // Liveness does not change while draining: the process is healthy, just leaving.
        assert_eq!(get(app, "/health").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn plain_get_on_ws_and_unknown_paths_get_json_errors() {
        let (app, _) = app();
        let (status, body) = get(app.clone(), "/ws").await;
        assert!(status.is_client_error(), "{status}");
        assert_eq!(body["error"], "websocket_upgrade_required");
        let (status, body) = get(app.clone(), "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not_found");
        let response = app
            .oneshot(Request::post("/health").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
