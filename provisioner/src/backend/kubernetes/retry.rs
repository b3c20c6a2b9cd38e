//! How Kubernetes API failures become [`BackendError`]s, and which of them are retried.
//!
//! Every call is bounded by [`CALL_TIMEOUT`]. Transient failures — timeouts, connection errors, `429 Too Many
//! Requests`, `5xx` — are retried a few times
//! with exponential backoff and jitter ([`backon`]); anything else is final at once. `404` is
//! [`BackendError::NotFound`], `409` [`BackendError::Conflict`] (a `resourceVersion` precondition lost a race),
//! and everything left over is [`BackendError::Unavailable`], which the API answers with 503 + `Retry-After`.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::backend::BackendError;

/// Attempts after the first one.
const RETRIES: usize = 3;
/// First backoff; doubles on each retry.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest wait for one API call. kube's client allows minutes (its watches need that); a pool operation
/// must not hang on one call, so each is cut off here and counts as a transient failure.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one API call with [`CALL_TIMEOUT`]; running out of time is an error like a refused connection.
pub async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, kube::Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(kube::Error::Service(
            format!("no answer from the Kubernetes API within {CALL_TIMEOUT:?}").into(),
        )),
    }
}

/// The HTTP status of an API error, if the API server answered.
pub fn status(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Whether trying again later may succeed.
pub fn is_transient(error: &kube::Error) -> bool {
    match status(error) {
        Some(code) => code == 429 || code >= 500,
        // No answer: timeouts, refused connections, TLS hiccups.
        None => matches!(
            error,
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)
        ),
    }
}

/// Maps a final API error about object `name`.
pub fn classify(name: impl std::fmt::Display, error: &kube::Error) -> BackendError {
    match status(error) {
        Some(404) => BackendError::NotFound(name.to_string()),
        Some(409) => BackendError::Conflict(name.to_string()),
        _ => BackendError::Unavailable(describe(error)),
    }
}

/// A short description for logs and 503 bodies (the API server's message when there is one).
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("Kubernetes API {}: {}", status.code, status.message),
        other => format!("Kubernetes API unreachable: {other}"),
    }
}

/// Runs `op`, each attempt [`bounded`], retrying transient failures (timeouts included) with backoff.
pub async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    (|| bounded(op()))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(FIRST_DELAY)
                .with_max_times(RETRIES)
                .with_jitter(),
        )
        .when(is_transient)
        .notify(|error, delay| tracing::warn!(%error, ?delay, what, "Kubernetes API call failed; retrying"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status {
                code,
                message: format!("status {code}"),
                ..kube::core::Status::default()
            }
            .boxed(),
        )
    }

    #[test]
    fn only_throttling_and_server_errors_are_transient() {
        for code in [429, 500, 503, 504] {
            assert!(is_transient(&api(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!is_transient(&api(code)), "{code}");
        }
    }

    #[test]
    fn errors_map_to_backend_errors() {
        assert!(matches!(classify("p", &api(404)), BackendError::NotFound(n) if n == "p"));
        assert!(matches!(classify("p", &api(409)), BackendError::Conflict(n) if n == "p"));
        match classify("p", &api(403)) {
            BackendError::Unavailable(message) => assert!(message.contains("403"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_then_given_up() {
        let mut calls = 0;
        let result: Result<(), _> = retrying("test", || {
            calls += 1;
            async { Err(api(503)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1 + RETRIES);

        let mut calls = 0;
        let result: Result<(), _> = retrying("test", || {
            calls += 1;
            async { Err(api(409)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a conflict is final");

        let mut calls = 0;
        let result = retrying("test", || {
            calls += 1;
            let attempt = calls;
            async move { if attempt < 3 { Err(api(500)) } else { Ok(attempt) } }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_hangs_times_out_and_is_retried() {
        let mut calls = 0;
        let result: Result<(), _> = retrying("test", || {
            calls += 1;
            std::future::pending()
        })
        .await;
        assert!(matches!(&result, Err(e) if is_transient(e)), "{result:?}");
        assert_eq!(calls, 1 + RETRIES);
        assert!(matches!(
            classify("p", &result.unwrap_err()),
            BackendError::Unavailable(m) if m.contains("no answer")
        ));
    }
}
