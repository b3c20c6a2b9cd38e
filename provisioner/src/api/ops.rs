//! Operational endpoints: `GET /pool` (live counts for the page), `/info` (the shared servers' URLs), `/health`
//! (liveness), `/ready` (readiness, 503 while draining), `/metrics` (Prometheus text), and the JSON 404/405
//! answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use common::api::{ApiErrorCode, HealthBody, InfoBody, PoolStatus};

use super::ApiState;
use super::error::ApiError;
use crate::backend::Backend;

/// `GET /pool`.
pub async fn pool<B: Backend>(State(state): State<Arc<ApiState<B>>>) -> Json<PoolStatus> {
    Json(state.pool.status())
}

/// `GET /info`: where the shared ping servers are (the page's second series).
pub async fn info<B: Backend>(State(state): State<Arc<ApiState<B>>>) -> Json<InfoBody> {
    Json(state.info.clone())
}

/// `GET /health`: the process is alive.
pub async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok".into() })
}

/// `GET /ready`: 200 while serving, 503 while draining.
pub async fn ready<B: Backend>(State(state): State<Arc<ApiState<B>>>) -> (StatusCode, Json<HealthBody>) {
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

/// `GET /metrics`.
pub async fn metrics<B: Backend>(State(state): State<Arc<ApiState<B>>>) -> Response {
    state.metrics.exposition()
}

/// Unknown path.
pub async fn not_found() -> ApiError {
    ApiError::new(
        ApiErrorCode::NotFound,
        "no such endpoint; see the API in the README (POST /session, GET /pool, ...)",
    )
}

/// Known path, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ApiErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}
