//! The session endpoints: create (rate-limited per client), read, kill, end. Who may read, kill or end a
//! session is decided before the handler runs, by the [`SessionAuth`] extractor.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use common::api::{ApiErrorCode, CreateSessionRequest, CreateSessionResponse, KillResponse, SessionStatus};
use governor::clock::{Clock, DefaultClock};

use super::auth::SessionAuth;
use super::error::ApiError;
use super::{ApiState, ClientIp};
use crate::backend::Backend;
use crate::ids::Token;

/// Longest `client` name accepted in `POST /session`.
const MAX_CLIENT_LEN: usize = 64;

/// `POST /session`: a new session with its own pod.
pub async fn create<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    ClientIp(ip): ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    let started = Instant::now();
    let request = parse_body(body).inspect_err(|e| state.metrics.reject(e.code()))?;
    if let Err(not_until) = state.session_limiter.check_key(&ip) {
        state.metrics.reject(ApiErrorCode::RateLimited);
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return Err(ApiError::new(
            ApiErrorCode::RateLimited,
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
            token: Token::for_session(&state.key, &created.session_id)
                .expose()
                .to_owned(),
            session_id: created.session_id,
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
        ApiError::new(ApiErrorCode::for_status(status.as_u16()), rejection.body_text()).with_status(status)
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateSessionRequest::default());
    }
    let request: CreateSessionRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ApiErrorCode::BadRequest, format!("invalid JSON body: {e}")))?;
    if request
        .client
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CLIENT_LEN)
    {
        return Err(ApiError::new(
            ApiErrorCode::BadRequest,
            format!("`client` is longer than {MAX_CLIENT_LEN} characters"),
        ));
    }
    Ok(request)
}

/// `GET /session/{id}`.
pub async fn get<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    SessionAuth(id): SessionAuth,
) -> Result<Json<SessionStatus>, ApiError> {
    Ok(Json(state.pool.session(&id)?))
}

/// `POST /session/{id}/kill`: terminate the session's pod; a replacement follows.
pub async fn kill<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    SessionAuth(id): SessionAuth,
) -> Result<(StatusCode, Json<KillResponse>), ApiError> {
    let killed = state.pool.kill(&id).await.map_err(|e| {
        let error = ApiError::from(e);
        state.metrics.reject(error.code());
        error
    })?;
    Ok((StatusCode::ACCEPTED, Json(KillResponse { killed })))
}

/// `DELETE /session/{id}`: end the session and terminate its pod.
pub async fn end<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    SessionAuth(id): SessionAuth,
) -> Result<StatusCode, ApiError> {
    state.pool.end(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
