//! Property-based fuzzing (proptest) of everything that parses untrusted input: WebSocket messages, API
//! bodies, bearer tokens and route tokens. Each property runs a few hundred generated cases in `cargo test`;
//! `PROPTEST_CASES=100000 cargo test -p common --features signing --test fuzz` runs a long campaign.

#![allow(clippy::unwrap_used)]

use common::api::CreateSessionRequest;
use common::protocol::{ClientMessage, ServerMessage};
use common::signing::{RouteClaims, SigningKey};
use proptest::prelude::*;

/// Strings that look like the protocol: JSON-ish fragments, keys and values glued at random.
fn jsonish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\"type\"",
        "\"ping\"",
        "\"pong\"",
        "\"seq\"",
        "\"sent_at\"",
        "1",
        "-1",
        "1e400",
        "0.5",
        "null",
        "true",
        "\"\\u0000\"",
        "18446744073709551616",
        " ",
        "NaN",
        "\u{1F600}",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|parts| parts.concat())
}

fn key() -> SigningKey {
    SigningKey::new(vec![42; 32]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_messages_never_panic(text in prop_oneof![any::<String>(), jsonish()]) {
        let _ = ClientMessage::parse(&text);
        let _ = ServerMessage::parse(&text);
        let _ = serde_json::from_str::<CreateSessionRequest>(&text);
    }

    #[test]
    fn pings_round_trip(seq in any::<u64>(), sent_at in -1e15f64..1e15) {
        let ping = ClientMessage::Ping { seq, sent_at };
        prop_assert_eq!(ClientMessage::parse(&ping.to_json()).unwrap(), ping);
    }

    #[test]
    fn forged_tokens_are_never_accepted(token in any::<String>(), session in "[a-f0-9]{1,32}") {
        prop_assert!(!key().verify_session_token(&session, &token));
        prop_assert!(key().verify_route(&token, &session, 0).is_err());
        let dotted = format!("v1.{token}.{token}");
        prop_assert!(key().verify_route(&dotted, &session, 0).is_err());
    }

    #[test]
    fn any_change_to_a_route_token_breaks_it(position in any::<prop::sample::Index>(), replacement in any::<char>()) {
        let claims = RouteClaims { sid: "s1".into(), pod: "p".into(), addr: "10.0.0.1:8080".into(), exp: u64::MAX };
        let token = key().sign_route(&claims);
        let mut chars: Vec<char> = token.chars().collect();
        let i = position.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        let tampered: String = chars.into_iter().collect();
        // A change may still decode to the same bytes only where base64 has slack bits; then it must carry
        // exactly the same claims.
        if let Ok(accepted) = key().verify_route(&tampered, "s1", 0) {
            prop_assert_eq!(accepted, claims);
        }
    }
}
