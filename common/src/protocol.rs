//! The WebSocket ping protocol, version [`PROTOCOL_VERSION`].
//!
//! Every message is one JSON text frame, an object tagged by its `type` field. The server speaks
//! [`ServerMessage`]s, the client speaks [`ClientMessage`]s. `PROTOCOL.md` at the repository root is the
//! human-readable description of the same types; the tests below pin the exact JSON.
//!
//! Parsing a client frame goes through [`ClientMessage::parse`], which tells malformed JSON, an unknown `type`
//! and a known `type` with bad fields apart, so the server can answer each with its own [`ErrorCode`].

use serde::{Deserialize, Serialize};

/// Version of this protocol, sent in every [`ServerMessage::Hello`]. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Who is answering: the identity of a ping server (a StatefulSet replica or a session pod).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// The pod name (Kubernetes pod name, or the local backend's process name).
    pub name: String,
    /// A friendly, stable name derived from [`PodInfo::name`], e.g. `Swift-Falcon-123`.
    pub display_name: String,
    /// The node the pod runs on, when known.
    pub node: Option<String>,
    /// The zone of that node, when known.
    pub zone: Option<String>,
}

/// A message from the server to the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on every connection.
    Hello {
        /// Always [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The pod that holds this connection.
        pod: PodInfo,
        /// The session this pod belongs to, for session pods; `null` for shared servers.
        session_id: Option<String>,
        /// Server wall clock, milliseconds since the Unix epoch.
        server_time_ms: u64,
    },
    /// The answer to one [`ClientMessage::Ping`].
    Pong {
        /// The ping's sequence number.
        seq: u64,
        /// The ping's `sent_at`, echoed unchanged.
        sent_at: f64,
        /// Server wall clock when the pong was built, milliseconds since the Unix epoch.
        server_time_ms: u64,
        /// Name of the pod that answered.
        pod: String,
    },
    /// Something the client sent was refused; the connection stays open.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// Sent right before the server closes the connection on purpose.
    Goodbye {
        /// Why the connection is being closed.
        reason: GoodbyeReason,
    },
}

/// A message from the client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Asks for a [`ServerMessage::Pong`].
    Ping {
        /// Client-chosen sequence number, echoed in the pong.
        seq: u64,
        /// Client clock in milliseconds when the ping was sent, echoed unchanged in the pong.
        sent_at: f64,
    },
}

/// Codes of [`ServerMessage::Error`], serialized in `snake_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON.
    MalformedJson,
    /// The JSON had no `type`, or a `type` this protocol version does not know.
    UnknownType,
    /// A known `type` with missing or ill-typed fields.
    InvalidMessage,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// Too many messages per second on this connection; the message was dropped.
    RateLimited,
}

impl ErrorCode {
    /// Every code (`PROTOCOL.md` must list each).
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::MalformedJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidMessage,
        ErrorCode::BinaryNotSupported,
        ErrorCode::RateLimited,
    ];

    /// The wire name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::BinaryNotSupported => "binary_not_supported",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// Reasons of [`ServerMessage::Goodbye`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoodbyeReason {
    /// The server is shutting down (SIGTERM, rollout, scale-down).
    Shutdown,
    /// The client sent nothing for the idle timeout.
    Idle,
    /// The session's pod was killed on purpose (the demo's "kill my pod").
    Killed,
}

/// Why a client frame could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all, or not a JSON object.
    #[error("message is not a JSON object: {0}")]
    MalformedJson(String),
    /// No `type` field, or one this protocol version does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A known `type` whose fields are missing or of the wrong type.
    #[error("invalid {kind} message: {detail}")]
    InvalidMessage {
        /// The message `type`.
        kind: String,
        /// What was wrong.
        detail: String,
    },
}

impl ParseError {
    /// The [`ErrorCode`] the server answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::MalformedJson(_) => ErrorCode::MalformedJson,
            ParseError::UnknownType(_) => ErrorCode::UnknownType,
            ParseError::InvalidMessage { .. } => ErrorCode::InvalidMessage,
        }
    }
}

/// The `type` values a [`ClientMessage`] may carry.
const CLIENT_TYPES: &[&str] = &["ping"];

impl ClientMessage {
    /// Parses one text frame from a client.
    ///
    /// The common case (a well-formed ping) takes one serde pass; only a frame that fails it is parsed a second
    /// time, as a generic JSON value, to say precisely what is wrong.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if let Ok(message) = serde_json::from_str(text) {
            return Ok(message);
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ParseError::MalformedJson(e.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| ParseError::MalformedJson("expected a JSON object".to_owned()))?;
        let kind = match object.get("type") {
            Some(serde_json::Value::String(kind)) => kind.as_str(),
            Some(other) => return Err(ParseError::UnknownType(other.to_string())),
            None => return Err(ParseError::UnknownType(String::new())),
        };
        if !CLIENT_TYPES.contains(&kind) {
            return Err(ParseError::UnknownType(kind.to_owned()));
        }
        match serde_json::from_value::<ClientMessage>(value.clone()) {
            Ok(message) => Ok(message),
            Err(e) => Err(ParseError::InvalidMessage {
                kind: kind.to_owned(),
                detail: e.to_string(),
            }),
        }
    }

    /// Serializes this message to the JSON text of one frame.
    ///
    /// Written out rather than through serde_json's serializer, because the web page sends nothing else: its
    /// float printer and that printer's table would otherwise be linked into the page for this one number.
    /// `f64`'s `Display` prints the shortest decimal that reads back to the same value, never with an exponent,
    /// which is valid JSON; a non-finite value becomes `null`, as serde_json writes it.
    pub fn to_json(&self) -> String {
        match self {
            ClientMessage::Ping { seq, sent_at } if sent_at.is_finite() => {
                format!(r#"{{"type":"ping","seq":{seq},"sent_at":{sent_at}}}"#)
            }
            ClientMessage::Ping { seq, .. } => format!(r#"{{"type":"ping","seq":{seq},"sent_at":null}}"#),
        }
    }
}

impl ServerMessage {
    /// Serializes this message to the JSON text of one frame.
    pub fn to_json(&self) -> String {
        // A non-finite `sent_at` cannot come from JSON, but serde_json would refuse it; fall back to an error
        // message rather than sending an empty frame.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"invalid_message","message":"cannot encode reply: {e}"}}"#)
        })
    }

    /// Parses one text frame from the server (used by clients and tests).
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> PodInfo {
        PodInfo {
            name: "ping-server-1".into(),
            display_name: "Swift-Falcon-123".into(),
            node: Some("node-a".into()),
            zone: None,
        }
    }

    /// Every server message round-trips, and its JSON is exactly what PROTOCOL.md documents.
    #[test]
    fn server_messages_round_trip_with_documented_json() {
        let cases = [
            (
                ServerMessage::Hello {
                    protocol: PROTOCOL_VERSION,
                    pod: pod(),
                    session_id: Some("s-1".into()),
                    server_time_ms: 1_700_000_000_000,
                },
                json!({"type":"hello","protocol":1,
                       "pod":{"name":"ping-server-1","display_name":"Swift-Falcon-123","node":"node-a","zone":null},
                       "session_id":"s-1","server_time_ms":1_700_000_000_000u64}),
            ),
            (
                ServerMessage::Pong {
                    seq: 7,
                    sent_at: 1234.5678,
                    server_time_ms: 42,
                    pod: "ping-server-1".into(),
                },
                json!({"type":"pong","seq":7,"sent_at":1234.5678,"server_time_ms":42,"pod":"ping-server-1"}),
            ),
            (
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    message: "slow down".into(),
                },
                json!({"type":"error","code":"rate_limited","message":"slow down"}),
            ),
            (
                ServerMessage::Goodbye {
                    reason: GoodbyeReason::Shutdown,
                },
                json!({"type":"goodbye","reason":"shutdown"}),
            ),
            (
                ServerMessage::Goodbye {
                    reason: GoodbyeReason::Idle,
                },
                json!({"type":"goodbye","reason":"idle"}),
            ),
            (
                ServerMessage::Goodbye {
                    reason: GoodbyeReason::Killed,
                },
                json!({"type":"goodbye","reason":"killed"}),
            ),
        ];
        for (message, expected) in cases {
            let text = message.to_json();
            let as_value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(as_value, expected, "JSON of {message:?}");
            assert_eq!(ServerMessage::parse(&text).unwrap(), message);
        }
    }

    #[test]
    fn all_lists_every_error_code_once() {
        // Adding a variant breaks this match until it is added here, and to `ALL`.
        let index = |code: ErrorCode| match code {
            ErrorCode::MalformedJson => 0,
            ErrorCode::UnknownType => 1,
            ErrorCode::InvalidMessage => 2,
            ErrorCode::BinaryNotSupported => 3,
            ErrorCode::RateLimited => 4,
        };
        let mut seen: Vec<usize> = ErrorCode::ALL.iter().map(|&code| index(code)).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn as_str_is_the_serialized_name() {
        for &code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn every_error_code_is_snake_case() {
        let codes = [
            (ErrorCode::MalformedJson, "malformed_json"),
            (ErrorCode::UnknownType, "unknown_type"),
            (ErrorCode::InvalidMessage, "invalid_message"),
            (ErrorCode::BinaryNotSupported, "binary_not_supported"),
            (ErrorCode::RateLimited, "rate_limited"),
        ];
        for (code, text) in codes {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(text));
        }
    }

    #[test]
    fn ping_json_is_what_serde_would_write() {
        let ping = ClientMessage::Ping { seq: 7, sent_at: 0.5 };
        assert_eq!(ping.to_json(), r#"{"type":"ping","seq":7,"sent_at":0.5}"#);
        assert_eq!(ping.to_json(), serde_json::to_string(&ping).unwrap());
        for sent_at in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let ping = ClientMessage::Ping { seq: 1, sent_at };
            assert_eq!(ping.to_json(), serde_json::to_string(&ping).unwrap());
            assert_eq!(ping.to_json(), r#"{"type":"ping","seq":1,"sent_at":null}"#);
        }
    }

    #[test]
    fn ping_round_trips_and_keeps_sent_at_exact() {
        for sent_at in [
            0.0,
            1234.5678,
            0.1 + 0.2,
            98_765.432_1_f64.next_up(),
            1.0e15 + 0.5,
            1.0e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5.0e-324,
            -17.25,
        ] {
            let ping = ClientMessage::Ping {
                seq: u64::MAX,
                sent_at,
            };
            let parsed = ClientMessage::parse(&ping.to_json()).unwrap();
            assert_eq!(parsed, ping);
            let ClientMessage::Ping { sent_at: back, .. } = parsed;
            assert_eq!(back.to_bits(), sent_at.to_bits());
        }
        assert_eq!(
            ClientMessage::parse(r#"{"type":"ping","seq":1,"sent_at":2}"#).unwrap(),
            ClientMessage::Ping { seq: 1, sent_at: 2.0 }
        );
    }

    #[test]
    fn unknown_extra_fields_are_ignored_for_forward_compatibility() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"ping","seq":1,"sent_at":2.5,"future":true}"#).unwrap(),
            ClientMessage::Ping { seq: 1, sent_at: 2.5 }
        );
    }

    #[test]
    fn malformed_frames_are_told_apart() {
        let cases: &[(&str, ErrorCode)] = &[
            ("", ErrorCode::MalformedJson),
            ("not json", ErrorCode::MalformedJson),
            (r#"{"type":"ping","seq":1"#, ErrorCode::MalformedJson),
            ("[1,2,3]", ErrorCode::MalformedJson),
            ("42", ErrorCode::MalformedJson),
            (r#"{"seq":1,"sent_at":2}"#, ErrorCode::UnknownType),
            (r#"{"type":"pong","seq":1,"sent_at":2}"#, ErrorCode::UnknownType),
            (r#"{"type":7}"#, ErrorCode::UnknownType),
            (r#"{"type":"PING","seq":1,"sent_at":2}"#, ErrorCode::UnknownType),
            (r#"{"type":"ping"}"#, ErrorCode::InvalidMessage),
            (
                r#"{"type":"ping","seq":-1,"sent_at":2}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"ping","seq":1.5,"sent_at":2}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"ping","seq":"1","sent_at":2}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"ping","seq":1,"sent_at":"now"}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"ping","seq":1,"sent_at":null}"#,
                ErrorCode::InvalidMessage,
            ),
        ];
        for (text, code) in cases {
            let err = ClientMessage::parse(text).expect_err(text);
            assert_eq!(err.code(), *code, "{text:?} gave {err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn malformed_server_frames_are_rejected() {
        for text in [
            r#"{"type":"hello"}"#,
            r#"{"type":"pong","seq":1}"#,
            r#"{"type":"error","code":"no_such_code","message":"x"}"#,
            r#"{"type":"goodbye","reason":"bored"}"#,
            r#"{"type":"ping","seq":1,"sent_at":2}"#,
        ] {
            assert!(ServerMessage::parse(text).is_err(), "{text} should be rejected");
        }
    }
}
