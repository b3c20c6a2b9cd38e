//! Identifiers and secrets: session ids and pod names from the OS random source, and bearer tokens derived
//! from the session id with the signing key (`common::signing`), so any provisioner replica can check them.
//!
//! A [`Token`]'s `Debug` form is redacted so it cannot end up in logs by accident.

use std::fmt;

use common::ids::{PodName, SessionId};
use common::signing::SigningKey;

/// Lowercase hex of `N` random bytes.
fn random_hex<const N: usize>() -> String {
    let mut bytes = [0_u8; N];
    // The OS random source failing is not something a web service can recover from or work around.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session id: 128 random bits, hex.
pub fn session_id() -> SessionId {
    SessionId::new(random_hex::<16>())
}

/// A new pod name, `session-` plus 40 random bits: valid as a Kubernetes name and a process name.
pub fn pod_name() -> PodName {
    PodName::new(format!("session-{}", random_hex::<5>()))
}

/// A session's bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Session `session_id`'s token under `key`.
    pub fn for_session(key: &SigningKey, session_id: &SessionId) -> Self {
        Self(key.session_token(session_id.as_str()))
    }

    /// The token as sent to its owner, once, in the `POST /session` answer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A new random signing key, for a provisioner given none (tokens then die with the process).
pub fn random_key() -> SigningKey {
    let mut bytes = [0_u8; 32];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    match SigningKey::new(bytes.to_vec()) {
        Ok(key) => key,
        Err(_) => unreachable!("32 bytes is a long enough key"),
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_well_formed() {
        let (a, b) = (session_id(), session_id());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        let pod = pod_name().to_string();
        assert!(pod.starts_with("session-") && pod.len() == 18, "{pod}");
    }

    #[test]
    fn tokens_depend_on_key_and_session_and_never_print() {
        let key = random_key();
        let (s1, s2) = (SessionId::new("s1"), SessionId::new("s2"));
        let token = Token::for_session(&key, &s1);
        assert!(key.verify_session_token("s1", token.expose()));
        assert_ne!(token.expose(), Token::for_session(&key, &s2).expose());
        assert_ne!(token.expose(), Token::for_session(&random_key(), &s1).expose());
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
