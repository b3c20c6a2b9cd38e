//! The session endpoints: create (rate-limited per client), read, kill, end. Who may read, kill or end a
//! session is decided before the handler runs, by the [`SessionAuth`] extractor.
//!
//! A client that hangs up cancels its handler; the pool's work must not be cut halfway (a claim in flight, a
//! cold start). So each handler runs the pool's part in a task of its own and only waits for its answer; a
//! session created for a client that is gone by then is ended at once.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use common::api::{ApiErrorCode, CreateSessionRequest, CreateSessionResponse, KillResponse, SessionStatus};

use super::ApiState;
use super::auth::SessionAuth;
use super::error::ApiError;
use super::guard::{self, Client};
use crate::backend::Backend;
use crate::ids::Token;
use crate::pool::PoolError;

/// Longest `client` name accepted in `POST /session`.
const MAX_CLIENT_LEN: usize = 64;

/// `POST /session`: a new session with its own pod.
pub async fn create<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    Client(client): Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    let started = Instant::now();
    let request = parse_body(body).inspect_err(|e| state.metrics.reject(e.code()))?;
    guard::check(&state.session_limiter, client).inspect_err(|e| state.metrics.reject(e.code()))?;
    let pool = state.pool.clone();
    let (answer, answered) = tokio::sync::oneshot::channel();
    let hangup = Hangup::watch(&state.metrics);
    tokio::spawn(async move {
        let result = pool.create_session(client).await;
        if let Err(Ok(created)) = answer.send(result) {
            tracing::info!(session = %created.session_id, %client, "the client hung up before its session was handed out; ending it");
            let _ = pool.end(&created.session_id, "client_gone").await;
        }
    });
    let created = answered
        .await
        .map_err(|_| ApiError::new(ApiErrorCode::InternalError, "the session could not be created"))?
        .map_err(|e| {
            let error = ApiError::from(e);
            state.metrics.reject(error.code());
            error
        });
    hangup.answered();
    let created = created?;
    tracing::info!(
        session = %created.session_id,
        client = request.client.as_deref().unwrap_or("-"),
        address = %client,
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
        if timed_out(&rejection) {
            return ApiError::new(
                ApiErrorCode::RequestTimeout,
                "the request body did not arrive in time",
            )
            .close_connection();
        }
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

/// Counts a request whose client hung up (its handler dropped) before it was answered.
struct Hangup {
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Hangup {
    fn watch(metrics: &Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics: Some(metrics.clone()),
        }
    }

    fn answered(mut self) {
        self.metrics = None;
    }
}

impl Drop for Hangup {
    fn drop(&mut self) {
        if let Some(metrics) = self.metrics.take() {
            tracing::debug!("the client hung up before its session request was answered");
            metrics.hangups.inc();
        }
    }
}

/// Whether reading the body failed because it did not arrive before the body deadline.
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Runs `work` in a task of its own, so that a client hanging up cannot cut it halfway, and waits for it.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, PoolError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|_| {
            ApiError::new(
                ApiErrorCode::InternalError,
                "the request failed inside the provisioner",
            )
        })?
        .map_err(ApiError::from)
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
    let pool = state.pool.clone();
    let killed = detached(async move { pool.kill(&id).await })
        .await
        .inspect_err(|error| state.metrics.reject(error.code()))?;
    Ok((StatusCode::ACCEPTED, Json(killed)))
}

/// `DELETE /session/{id}`: end the session and terminate its pod.
pub async fn end<B: Backend>(
    State(state): State<Arc<ApiState<B>>>,
    SessionAuth(id): SessionAuth,
) -> Result<StatusCode, ApiError> {
    let pool = state.pool.clone();
    detached(async move { pool.end(&id, "deleted").await }).await?;
    Ok(StatusCode::NO_CONTENT)
}
