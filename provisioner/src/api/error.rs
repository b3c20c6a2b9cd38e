//! The API's one error type: every failure becomes a status code, a `{"error","message"}` body and, where
//! waiting helps, a `Retry-After` header. [`json_errors`] gives the same shape to errors produced by layers
//! (body limit, CORS) that know nothing about it.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::api::ErrorBody;

use crate::pool::PoolError;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with a status, a code and a sentence.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` (rounded up to whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this needs the session's token: send `Authorization: Bearer <token>`",
        )
    }
}

/// Seconds for `Retry-After`: rounded up, at least one.
pub fn retry_seconds(after: Duration) -> u64 {
    (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1)
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        let message = error.to_string();
        match error {
            PoolError::AtCapacity(_) => Self::new(StatusCode::TOO_MANY_REQUESTS, "at_capacity", message)
                .retry_after(Duration::from_secs(10)),
            PoolError::ColdStartTimeout(_) => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "cold_start_timeout", message)
            }
            PoolError::UnknownSession => Self::new(StatusCode::NOT_FOUND, "session_not_found", message),
            PoolError::Unauthorized => Self::unauthorized(),
            PoolError::Ended => Self::new(StatusCode::CONFLICT, "session_ended", message),
            PoolError::KillCooldown(wait) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "kill_cooldown", message).retry_after(wait)
            }
            PoolError::NoPod => {
                Self::new(StatusCode::CONFLICT, "no_pod", message).retry_after(Duration::from_secs(1))
            }
            PoolError::ShuttingDown => Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
                .retry_after(Duration::from_secs(5)),
            PoolError::Backend(e) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                e.to_string(),
            )
            .retry_after(Duration::from_secs(5)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(after) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&retry_seconds(after).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Rewrites error responses that are not JSON (from tower layers such as the body limit) into the API's
/// error shape, keeping status and headers.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_client_error() => "bad_request",
        _ => "internal_error",
    };
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_seconds(Duration::from_millis(4100)), 5);
        assert_eq!(retry_seconds(Duration::from_secs(10)), 10);
        assert_eq!(retry_seconds(Duration::ZERO), 1);
    }
}
