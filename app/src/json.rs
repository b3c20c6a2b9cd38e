//! JSON from the network into the shared `common` types.
//!
//! In the browser the text is parsed by the browser itself (`JSON.parse`) and the resulting value is mapped onto
//! the types with serde-wasm-bindgen, so the page carries no JSON parser of its own: serde_json's parser and its
//! error machinery were, after Leptos, the largest part of the page's WebAssembly. Natively (`cargo test`) the
//! same functions use serde_json; both accept exactly what the shared types' `Deserialize` accepts.
//!
//! The two tagged enums the page reads, [`ServerMessage`] and [`PoolEvent`] (objects tagged by their `type`
//! field), go through [`parse_tagged`]: it reads `type` first and then decodes only that variant's fields.
//! serde's derive for internally tagged enums instead buffers the whole value into its private `Content` tree
//! and decodes it a second time, and that generic machinery was 12 KB of the gzipped page (BENCHMARKS.md).
//! [`Tagged`]'s implementations below restate each variant's fields for that; constructing the variants makes
//! the compiler check them against `common`, and the tests check them against serde's own encoding.

use common::api::{BoardPod, PoolEvent};
use common::ids::PodName;
use common::protocol::{ErrorCode, GoodbyeReason, PodInfo, ServerMessage};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};

/// Parses `text` as a `T`; the error is a sentence for the page's notice.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    #[cfg(target_arch = "wasm32")]
    {
        let value = js_sys::JSON::parse(text).map_err(|_| NOT_JSON.to_owned())?;
        serde_wasm_bindgen::from_value(value).map_err(|e| e.to_string())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// An enum sent as one object tagged by its `type` field.
pub trait Tagged: Sized {
    /// Decodes the variant named `tag` from `fields`, the whole object (the `type` field is ignored there).
    fn decode<'de, D: Deserializer<'de>>(tag: &str, fields: D) -> Result<Self, D::Error>;
}

/// Parses `text` as a `T` tagged by its `type` field; the error is a sentence for the page's notice.
pub fn parse_tagged<T: Tagged>(text: &str) -> Result<T, String> {
    #[cfg(target_arch = "wasm32")]
    {
        let value = js_sys::JSON::parse(text).map_err(|_| NOT_JSON.to_owned())?;
        let tag = js_sys::Reflect::get(&value, &wasm_bindgen::JsValue::from_str("type"))
            .ok()
            .and_then(|tag| tag.as_string())
            .ok_or_else(|| NO_TYPE.to_owned())?;
        T::decode(&tag, serde_wasm_bindgen::Deserializer::from(value)).map_err(|e| e.to_string())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| NOT_JSON.to_owned())?;
        let tag = value
            .get("type")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| NO_TYPE.to_owned())?
            .to_owned();
        T::decode(&tag, value).map_err(|e| e.to_string())
    }
}

const NOT_JSON: &str = "the answer is not JSON";
const NO_TYPE: &str = "the message has no `type`";

impl Tagged for ServerMessage {
    fn decode<'de, D: Deserializer<'de>>(tag: &str, fields: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Hello {
            protocol: u32,
            pod: PodInfo,
            session_id: Option<String>,
            server_time_ms: u64,
        }
        #[derive(Deserialize)]
        struct Pong {
            seq: u64,
            sent_at: f64,
            server_time_ms: u64,
            pod: String,
        }
        #[derive(Deserialize)]
        struct Error {
            code: ErrorCode,
            message: String,
        }
        #[derive(Deserialize)]
        struct Goodbye {
            reason: GoodbyeReason,
        }
        Ok(match tag {
            "hello" => {
                let m = Hello::deserialize(fields)?;
                Self::Hello {
                    protocol: m.protocol,
                    pod: m.pod,
                    session_id: m.session_id,
                    server_time_ms: m.server_time_ms,
                }
            }
            "pong" => {
                let m = Pong::deserialize(fields)?;
                Self::Pong {
                    seq: m.seq,
                    sent_at: m.sent_at,
                    server_time_ms: m.server_time_ms,
                    pod: m.pod,
                }
            }
            "error" => {
                let m = Error::deserialize(fields)?;
                Self::Error {
                    code: m.code,
                    message: m.message,
                }
            }
            "goodbye" => Self::Goodbye {
                reason: Goodbye::deserialize(fields)?.reason,
            },
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &["hello", "pong", "error", "goodbye"],
                ));
            }
        })
    }
}

impl Tagged for PoolEvent {
    fn decode<'de, D: Deserializer<'de>>(tag: &str, fields: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Snapshot {
            pods: Vec<BoardPod>,
            target: u32,
            max_sessions: u32,
        }
        #[derive(Deserialize)]
        struct Pod {
            pod: BoardPod,
        }
        #[derive(Deserialize)]
        struct Gone {
            name: PodName,
        }
        Ok(match tag {
            "snapshot" => {
                let m = Snapshot::deserialize(fields)?;
                Self::Snapshot {
                    pods: m.pods,
                    target: m.target,
                    max_sessions: m.max_sessions,
                }
            }
            "pod" => Self::Pod {
                pod: Pod::deserialize(fields)?.pod,
            },
            "gone" => Self::Gone {
                name: Gone::deserialize(fields)?.name,
            },
            other => return Err(D::Error::unknown_variant(other, &["snapshot", "pod", "gone"])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::{BoardState, PoolStatus};

    /// Every variant, as the server and the provisioner send it (serde's derive), decodes to itself.
    fn round_trips<T: Tagged + serde::Serialize + PartialEq + std::fmt::Debug>(values: Vec<T>) {
        for value in values {
            let text = serde_json::to_string(&value).expect("serialises");
            assert_eq!(parse_tagged::<T>(&text).as_ref(), Ok(&value), "{text}");
        }
    }

    #[test]
    fn the_tagged_decoders_agree_with_serdes_encoding_for_every_variant() {
        let pod = PodInfo {
            name: "session-abc".into(),
            display_name: "Swift-Falcon-1".into(),
            node: Some("n1".into()),
            zone: None,
        };
        round_trips(vec![
            ServerMessage::Hello {
                protocol: 1,
                pod: pod.clone(),
                session_id: None,
                server_time_ms: 9,
            },
            ServerMessage::Hello {
                protocol: 1,
                pod,
                session_id: Some("s".into()),
                server_time_ms: 9,
            },
            ServerMessage::Pong {
                seq: 3,
                sent_at: 12.5,
                server_time_ms: 9,
                pod: "p".into(),
            },
            ServerMessage::Error {
                code: ErrorCode::UnknownType,
                message: "no".into(),
            },
            ServerMessage::Goodbye {
                reason: GoodbyeReason::Killed,
            },
        ]);
        let board_pod = BoardPod {
            name: PodName::new("session-abc"),
            state: BoardState::Warm,
            age_ms: 5,
            node: None,
        };
        round_trips(vec![
            PoolEvent::Snapshot {
                pods: vec![board_pod.clone()],
                target: 2,
                max_sessions: 20,
            },
            PoolEvent::Pod {
                pod: board_pod.clone(),
            },
            PoolEvent::Gone { name: board_pod.name },
        ]);
    }

    #[test]
    fn parses_the_shared_types_and_refuses_the_rest() {
        let pong = parse_tagged::<ServerMessage>(
            r#"{"seq":3,"sent_at":12.5,"type":"pong","server_time_ms":9,"pod":"p","extra":1}"#,
        );
        assert!(
            matches!(pong, Ok(ServerMessage::Pong { seq: 3, ref pod, .. }) if pod == "p"),
            "{pong:?}"
        );
        assert!(parse_tagged::<ServerMessage>(r#"{"type":"nope"}"#).is_err());
        assert_eq!(
            parse_tagged::<ServerMessage>(r#"{"seq":3}"#),
            Err(NO_TYPE.to_owned())
        );
        assert!(parse_tagged::<PoolEvent>(r#"{"type":"pod"}"#).is_err());
        assert!(parse_tagged::<ServerMessage>("not json").is_err());
        assert!(parse::<PoolStatus>("{}").is_err());
    }
}
