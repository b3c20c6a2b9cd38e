//! The one HTTP error answer of both services: a status, an [`ErrorBody`] (`{"error": <code>, "message": …}`)
//! and, where waiting helps, a `Retry-After` header. The provisioner and the ping server build every refusal
//! with [`ApiError`]; [`json_errors`] gives the same shape to errors made by layers that know nothing about it
//! (body limit, timeouts, axum's own rejections).

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::{ApiErrorCode, ErrorBody};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ApiErrorCode,
    message: String,
    retry_after: Option<Duration>,
    close: bool,
}

impl ApiError {
    /// An error with `code`'s usual status and a sentence for humans.
    pub fn new(code: ApiErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// Asks for the connection to be closed after this answer (`Connection: close`), for a client that is too
    /// slow to keep.
    pub fn close_connection(mut self) -> Self {
        self.close = true;
        self
    }

    /// The same error with another status (for codes whose status depends on the case, such as a refused
    /// WebSocket upgrade).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a `Retry-After` (rounded up to whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The machine-readable code.
    pub fn code(&self) -> ApiErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The sentence.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Seconds for `Retry-After`: rounded up, at least one.
pub fn retry_seconds(after: Duration) -> u64 {
    (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(after) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&retry_seconds(after).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Rewrites error responses that are not JSON (from tower layers such as the body limit) into the
/// [`ErrorBody`] shape, keeping status and headers. Use with `axum::middleware::map_response`.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = ApiErrorCode::for_status(status.as_u16());
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

    #[tokio::test]
    async fn errors_answer_with_their_status_body_and_retry_after() {
        let response = ApiError::new(ApiErrorCode::KillCooldown, "wait")
            .retry_after(Duration::from_millis(1500))
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<ErrorBody>(&body).unwrap(),
            ErrorBody::new(ApiErrorCode::KillCooldown, "wait")
        );
    }

    #[tokio::test]
    async fn plain_layer_errors_become_json() {
        let plain = (StatusCode::PAYLOAD_TOO_LARGE, "too big").into_response();
        let response = json_errors(plain).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<ErrorBody>(&body).unwrap().error,
            ApiErrorCode::PayloadTooLarge
        );
    }
}
