//! HTTP routes of the ping server: `/ws`, `/ws/session/{id}` (the edge role, in [`crate::edge`]), `/health`,
//! `/ready`, `/activity` (for the provisioner), `/metrics`, and JSON errors for everything else. Who may open a WebSocket,
//! and with what limits, is [`crate::admission`]'s to say.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use common::api::{ActivityBody, ApiErrorCode, HealthBody};
use common::error::ApiError;

use crate::admission::{AppState, not_an_upgrade};
use crate::connection::Connection;
use crate::handler::Responder;
use crate::metrics::Kind;

/// The router: `/ws`, `/ws/session/{id}` (edge), `/health`, `/ready`, `/activity`, `/metrics`, JSON 404/405
/// for the rest, with request ids, logs and durations ([`common::http::observe`]).
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/ws", get(websocket))
        .route("/ws/session/{id}", get(crate::edge::session_websocket))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/activity", get(activity))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    common::http::observe(routes, state.metrics.http.clone()).with_state(state)
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(refused) = state.check_origin(&headers) {
        return state.refuse(refused);
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return state.refuse(not_an_upgrade(rejection)),
    };
    let kind = if state.identity.session_id.is_some() {
        Kind::Session
    } else {
        Kind::Shared
    };
    let admission = match state.admit(state.client(peer.ip(), &headers), kind) {
        Ok(admission) => admission,
        Err(busy) => return state.refuse(busy),
    };
    let connection = Connection {
        identity: state.identity.clone(),
        responder: Responder::new(
            state.identity.pod.name.as_str().into(),
            state.max_message_bytes,
            state.max_pings_per_second,
        ),
        idle_timeout: state.idle_timeout,
        write_timeout: state.write_timeout,
        shutdown: state.draining().clone(),
        activity: state.activity.clone(),
        metrics: state.metrics.clone(),
    };
    state.configure(upgrade).on_upgrade(move |socket| async move {
        let _admission = admission;
        connection.run(socket).await;
    })
}

async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok".into() })
}

async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<HealthBody>) {
    if state.draining().is_cancelled() {
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

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.exposition()
}

async fn not_found() -> ApiError {
    ApiError::new(
        ApiErrorCode::NotFound,
        "no such endpoint; try /ws, /health, /ready, /activity or /metrics",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ApiErrorCode::MethodNotAllowed, "this endpoint only answers GET")
}

#[cfg(test)]
mod tests {
    //! Router-level tests with `oneshot`: no socket needed for the plain HTTP endpoints.
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use clap::Parser;
    use common::signing::SigningKey;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;
    use tower::ServiceExt;

    use crate::Config;

    fn app() -> (Router, CancellationToken) {
        let config = Config::parse_from(["server", "--pod-name", "test-pod"]);
        let draining = CancellationToken::new();
        let state = AppState::new(&config, None, draining.clone(), TaskTracker::new());
        (router(Arc::new(state)), draining)
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = app
            .oneshot(
                Request::get(uri)
                    .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))))
                    .body(Body::empty())
                    .unwrap(),
            )
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
