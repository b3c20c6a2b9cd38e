//! The session endpoints: create (rate-limited per client), read, kill, end. Authorization is by bearer token,
//! checked by the pool in constant time.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::api::{CreateSessionRequest, CreateSessionResponse, KillResponse, SessionStatus};
use governor::clock::{Clock, DefaultClock};

use super::auth::Bearer;
use super::error::ApiError;
use super::{ApiState, ClientIp};
use crate::backend::Backend;

/// Longest `client` name accepted in `POST /session`.
const MAX_CLIENT_LEN: usize = 64;

/// `POST /session`: a new session with its own pod.
pub async fn create<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    ClientIp(ip): ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    let started = Instant::now();
    let request = parse_body(body).inspect_err(|_| state.metrics.reject("bad_request"))?;
    if let Err(not_until) = state.session_limiter.check_key(&ip) {
        state.metrics.reject("rate_limited");
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many new sessions from your address; wait a moment",
        )
        .retry_after(wait));
    }
    let created = state.pool.create_session().await.map_err(|e| {
        let error = ApiError::from(e);
        state.metrics.reject(error.code());
        error
    })?;
    tracing::info!(
        session = %created.session_id,
        client = request.client.as_deref().unwrap_or("-"),
        %ip,
        "session handed out"
    );
    Ok((
        StatusCode::CREATED,
        Json(CreateSessionResponse {
            session_id: created.session_id,
            token: created.token.expose().to_owned(),
            pod: created.pod,
            websocket_url: created.websocket_url,
            source: created.source,
            provision_ms: started.elapsed().as_secs_f64() * 1000.0,
        }),
    ))
}

/// An empty body means `{}`; anything else must be a valid [`CreateSessionRequest`].
fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<CreateSessionRequest, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, rejection.body_text())
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateSessionRequest::default());
    }
    let request: CreateSessionRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if request
        .client
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CLIENT_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "`client` is longer than {MAX_CLIENT_LEN} characters"
        )));
    }
    Ok(request)
}

/// `GET /session/{id}`.
pub async fn get<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    Bearer(token): Bearer,
) -> Result<Json<SessionStatus>, ApiError> {
    Ok(Json(state.pool.session(&id, &token)?))
}

/// `POST /session/{id}/kill`: terminate the session's pod; a replacement follows.
pub async fn kill<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    Bearer(token): Bearer,
) -> Result<(StatusCode, Json<KillResponse>), ApiError> {
    let killed = state.pool.kill(&id, &token).await.map_err(|e| {
        let error = ApiError::from(e);
        state.metrics.reject(error.code());
        error
    })?;
    Ok((StatusCode::ACCEPTED, Json(KillResponse { killed })))
}

/// `DELETE /session/{id}`: end the session and terminate its pod.
pub async fn end<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    Path(id): Path<String>,
    Bearer(token): Bearer,
) -> Result<StatusCode, ApiError> {
    state.pool.end(&id, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
