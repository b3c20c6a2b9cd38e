//! Who may act on a session: the [`SessionAuth`] extractor reads the `{id}` of the path and the
//! `Authorization: Bearer <token>` header, and lets the request through only if the token is that session's
//! (an HMAC of the id under the signing key, compared in constant time). It checks the token before anything
//! looks the session up, so nobody without it learns whether an id exists; the pool behind it knows sessions
//! by id only and never sees a token or the key.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use common::api::ApiErrorCode;
use common::ids::SessionId;

use super::ApiState;
use super::error::ApiError;
use crate::backend::Backend;

/// Longest token accepted (ours are 43 characters); bounds the work on garbage.
const MAX_TOKEN_LEN: usize = 256;

/// The session of the request's path, whose token the request carries.
#[derive(Debug)]
pub struct SessionAuth(pub SessionId);

/// 401 with the sentence that says how to get in.
pub fn unauthorized() -> ApiError {
    ApiError::new(
        ApiErrorCode::Unauthorized,
        "this needs the session's token: send `Authorization: Bearer <token>`",
    )
}

/// The bearer token of a request, if it has a well-formed one.
fn bearer(parts: &Parts) -> Option<&str> {
    let header = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN_LEN)
        .then_some(token)
}

impl<B: Backend> FromRequestParts<Arc<ApiState<B>>> for SessionAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState<B>>,
    ) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ApiErrorCode::BadRequest, rejection.body_text()))?;
        let token = bearer(parts).ok_or_else(unauthorized)?;
        if !state.key.verify_session_token(&id, token) {
            return Err(unauthorized());
        }
        Ok(Self(SessionId::new(id)))
    }
}
