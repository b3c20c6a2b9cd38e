//! Identifiers and secrets: session ids, pod names and bearer tokens, all from the OS random source.
//!
//! Tokens carry 256 random bits and are only ever compared in constant time ([`Token::matches`]); their
//! `Debug` form is redacted so they cannot end up in logs by accident.

use std::fmt;

use subtle::ConstantTimeEq;

/// Lowercase hex of `N` random bytes.
fn random_hex<const N: usize>() -> String {
    let mut bytes = [0_u8; N];
    // The OS random source failing is not something a web service can recover from or work around.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session id: 128 random bits, hex.
pub fn session_id() -> String {
    random_hex::<16>()
}

/// A new pod name, `session-` plus 40 random bits: valid as a Kubernetes name and a process name.
pub fn pod_name() -> String {
    format!("session-{}", random_hex::<5>())
}

/// A session's bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A new random token (256 bits, 64 hex characters).
    pub fn generate() -> Self {
        Self(random_hex::<32>())
    }

    /// The token as sent to its owner, once, in the `POST /session` answer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
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
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        let pod = pod_name();
        assert!(pod.starts_with("session-") && pod.len() == 18, "{pod}");
    }

    #[test]
    fn tokens_match_only_themselves_and_never_print() {
        let token = Token::generate();
        assert_eq!(token.expose().len(), 64);
        assert!(token.matches(token.expose()));
        assert!(!token.matches(""));
        assert!(!token.matches(&token.expose()[..63]));
        assert!(!token.matches(Token::generate().expose()));
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
