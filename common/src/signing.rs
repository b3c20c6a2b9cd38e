//! Signed secrets shared by the provisioner (which signs) and the edge ping servers (which verify), so neither
//! needs to store sessions or ask the other: one key, read by both from the same Kubernetes Secret.
//!
//! - [`SigningKey::session_token`]: a session's bearer token, derived from its id. Any provisioner replica, or
//!   one restarted from scratch, can check a token for a session it learned from pod labels.
//! - [`RouteClaims`]: a short-lived, signed route `session → pod address`. The browser presents it to an edge
//!   server on `/ws/session/{id}?token=…`; the edge checks signature, session and expiry, then proxies to the
//!   address inside, with no state and no API access.
//!
//! Both are HMAC-SHA256 with domain separation, verified in constant time. A route token is
//! `v1.<base64url(JSON claims)>.<base64url(MAC)>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// Largest route token accepted, in bytes (anything longer is rejected before any work).
pub const MAX_ROUTE_TOKEN_BYTES: usize = 1024;

const SESSION_DOMAIN: &[u8] = b"resume-showcase session token v1\0";
const ROUTE_DOMAIN: &[u8] = b"resume-showcase route token v1\0";
const ROUTE_PREFIX: &str = "v1.";

/// Why a key or a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The key is too short to be secret.
    #[error("the signing key must be at least {MIN_KEY_BYTES} bytes")]
    WeakKey,
    /// Not a token of this format.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match (tampered, or signed with another key).
    #[error("bad token signature")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// Signed for another session.
    #[error("token is for another session")]
    WrongSession,
}

/// The HMAC key. Its `Debug` form is redacted.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A secret given on the command line or in the environment (e.g. the key itself); `Debug` is redacted so a
/// printed configuration never shows it.
#[derive(Clone)]
pub struct SecretArg(pub String);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Where a route token sends the browser, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteClaims {
    /// Session id.
    pub sid: String,
    /// The session pod's name (for logs and the hello check).
    pub pod: String,
    /// The pod's `host:port` the edge proxies to.
    pub addr: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

impl SigningKey {
    /// A key from raw bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, SigningError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(SigningError::WeakKey);
        }
        Ok(Self(bytes))
    }

    /// The key from a `--signing-key` value or a `--signing-key-file`, whichever is given (`Ok(None)` when
    /// neither is).
    pub fn from_args(
        value: Option<&SecretArg>,
        file: Option<&std::path::Path>,
    ) -> std::io::Result<Option<Self>> {
        let invalid = |e: SigningError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        match (value, file) {
            (Some(SecretArg(key)), _) => Self::new(key.trim().as_bytes()).map(Some).map_err(invalid),
            (None, Some(path)) => Self::from_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A key from a file (a mounted Secret), ignoring trailing whitespace.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let mut bytes = std::fs::read(path)?;
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        Self::new(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn mac(&self, domain: &[u8], message: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        };
        mac.update(domain);
        mac.update(message);
        mac
    }

    /// The bearer token of session `session_id` (43 characters of base64url).
    pub fn session_token(&self, session_id: &str) -> String {
        B64.encode(
            self.mac(SESSION_DOMAIN, session_id.as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `presented` is session `session_id`'s token, in constant time.
    pub fn verify_session_token(&self, session_id: &str, presented: &str) -> bool {
        let Ok(bytes) = B64.decode(presented) else {
            return false;
        };
        self.mac(SESSION_DOMAIN, session_id.as_bytes())
            .verify_slice(&bytes)
            .is_ok()
    }

    /// Signs a route.
    pub fn sign_route(&self, claims: &RouteClaims) -> String {
        // Serializing four plain fields cannot fail.
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let payload = B64.encode(payload);
        let mac = self.mac(ROUTE_DOMAIN, payload.as_bytes()).finalize().into_bytes();
        format!("{ROUTE_PREFIX}{payload}.{}", B64.encode(mac))
    }

    /// Checks a route token for `session_id` at `now` (Unix seconds) and returns its claims.
    pub fn verify_route(&self, token: &str, session_id: &str, now: u64) -> Result<RouteClaims, SigningError> {
        if token.len() > MAX_ROUTE_TOKEN_BYTES {
            return Err(SigningError::Malformed);
        }
        let rest = token.strip_prefix(ROUTE_PREFIX).ok_or(SigningError::Malformed)?;
        let (payload, mac) = rest.split_once('.').ok_or(SigningError::Malformed)?;
        let mac = B64.decode(mac).map_err(|_| SigningError::Malformed)?;
        self.mac(ROUTE_DOMAIN, payload.as_bytes())
            .verify_slice(&mac)
            .map_err(|_| SigningError::BadSignature)?;
        let payload = B64.decode(payload).map_err(|_| SigningError::Malformed)?;
        let claims: RouteClaims = serde_json::from_slice(&payload).map_err(|_| SigningError::Malformed)?;
        if claims.sid != session_id {
            return Err(SigningError::WrongSession);
        }
        if now >= claims.exp {
            return Err(SigningError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::new(vec![byte; 32]).unwrap()
    }

    fn claims() -> RouteClaims {
        RouteClaims {
            sid: "abc".into(),
            pod: "session-1".into(),
            addr: "10.0.0.5:8080".into(),
            exp: 1_000,
        }
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert_eq!(SigningKey::new(vec![1; 31]).unwrap_err(), SigningError::WeakKey);
        assert_eq!(format!("{:?}", key(7)), "SigningKey(<redacted>)");
    }

    #[test]
    fn session_tokens_belong_to_one_session_and_one_key() {
        let token = key(1).session_token("s1");
        assert_eq!(token.len(), 43);
        assert!(key(1).verify_session_token("s1", &token));
        assert!(!key(1).verify_session_token("s2", &token));
        assert!(!key(2).verify_session_token("s1", &token));
        assert!(!key(1).verify_session_token("s1", &token[..42]));
        assert!(!key(1).verify_session_token("s1", "not base64 !"));
        assert!(!key(1).verify_session_token("s1", ""));
    }

    #[test]
    fn route_tokens_round_trip_before_expiry() {
        let token = key(1).sign_route(&claims());
        assert!(token.starts_with("v1."));
        assert_eq!(key(1).verify_route(&token, "abc", 999).unwrap(), claims());
    }

    #[test]
    fn route_tokens_refuse_expiry_other_sessions_keys_and_tampering() {
        let token = key(1).sign_route(&claims());
        assert_eq!(
            key(1).verify_route(&token, "abc", 1_000),
            Err(SigningError::Expired)
        );
        assert_eq!(
            key(1).verify_route(&token, "abd", 1),
            Err(SigningError::WrongSession)
        );
        assert_eq!(
            key(2).verify_route(&token, "abc", 1),
            Err(SigningError::BadSignature)
        );

        // Re-point the route at another address, keeping the signature.
        let (_, rest) = token.split_once('.').unwrap();
        let (_, mac) = rest.split_once('.').unwrap();
        let forged = RouteClaims {
            addr: "169.254.169.254:80".into(),
            ..claims()
        };
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let forged = format!("v1.{forged_payload}.{mac}");
        assert_eq!(
            key(1).verify_route(&forged, "abc", 1),
            Err(SigningError::BadSignature)
        );

        for malformed in ["", "v1.", "v2.a.b", "v1.abc", "v1.a.!!", &"x".repeat(2_000)] {
            assert_eq!(
                key(1).verify_route(malformed, "abc", 1),
                Err(SigningError::Malformed),
                "{malformed}"
            );
        }
        // Signed but not claims.
        let payload = B64.encode(b"[]");
        let mac = B64.encode(
            key(1)
                .mac(ROUTE_DOMAIN, payload.as_bytes())
                .finalize()
                .into_bytes(),
        );
        assert_eq!(
            key(1).verify_route(&format!("v1.{payload}.{mac}"), "abc", 1),
            Err(SigningError::Malformed)
        );
    }
}
