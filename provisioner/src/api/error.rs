//! How the pool's refusals become API errors. The error type itself, its JSON body and `Retry-After`, is the
//! one both services share (`common::error::ApiError`); this module only says which code and status each
//! [`PoolError`] is answered with.

use std::time::Duration;

use common::api::ApiErrorCode;
pub use common::error::{ApiError, json_errors};

use crate::pool::PoolError;

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        let message = error.to_string();
        match error {
            PoolError::AtCapacity(_) => {
                ApiError::new(ApiErrorCode::AtCapacity, message).retry_after(Duration::from_secs(10))
            }
            PoolError::TooManySessions(_) => {
                ApiError::new(ApiErrorCode::TooManySessions, message).retry_after(Duration::from_secs(30))
            }
            PoolError::ColdStartTimeout(_) => ApiError::new(ApiErrorCode::ColdStartTimeout, message),
            PoolError::UnknownSession => ApiError::new(ApiErrorCode::SessionNotFound, message),
            PoolError::Ended => ApiError::new(ApiErrorCode::SessionEnded, message),
            PoolError::KillCooldown(wait) => {
                ApiError::new(ApiErrorCode::KillCooldown, message).retry_after(wait)
            }
            PoolError::NoPod => {
                ApiError::new(ApiErrorCode::NoPod, message).retry_after(Duration::from_secs(1))
            }
            PoolError::ShuttingDown => {
                ApiError::new(ApiErrorCode::ShuttingDown, message).retry_after(Duration::from_secs(5))
            }
            PoolError::Backend(e) => ApiError::new(ApiErrorCode::BackendUnavailable, e.to_string())
                .retry_after(Duration::from_secs(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn pool_refusals_get_their_codes_statuses_and_waits() {
        let cases = [
            (
                PoolError::AtCapacity(3),
                StatusCode::TOO_MANY_REQUESTS,
                ApiErrorCode::AtCapacity,
            ),
            (
                PoolError::KillCooldown(Duration::from_secs(2)),
                StatusCode::TOO_MANY_REQUESTS,
                ApiErrorCode::KillCooldown,
            ),
            (
                PoolError::UnknownSession,
                StatusCode::NOT_FOUND,
                ApiErrorCode::SessionNotFound,
            ),
            (PoolError::Ended, StatusCode::CONFLICT, ApiErrorCode::SessionEnded),
            (
                PoolError::ColdStartTimeout(Duration::from_secs(1)),
                StatusCode::GATEWAY_TIMEOUT,
                ApiErrorCode::ColdStartTimeout,
            ),
        ];
        for (error, status, code) in cases {
            let error = ApiError::from(error);
            assert_eq!((error.status(), error.code()), (status, code));
        }
    }
}
