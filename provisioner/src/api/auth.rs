//! The `Authorization: Bearer <token>` extractor. It only reads the header; matching the token against the
//! session (in constant time) is the pool's job.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;

/// Longest token accepted (ours are 43 characters); bounds the work on garbage.
const MAX_TOKEN_LEN: usize = 256;

/// The bearer token of a request.
pub struct Bearer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let (scheme, token) = header.split_once(' ').ok_or_else(ApiError::unauthorized)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::unauthorized());
        }
        Ok(Self(token.to_owned()))
    }
}
