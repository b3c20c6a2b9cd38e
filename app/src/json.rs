//! JSON from the network into the shared `common` types.
//!
//! In the browser the text is parsed by the browser itself (`JSON.parse`) and the resulting value is mapped onto
//! the types with serde-wasm-bindgen, so the page carries no JSON parser of its own: serde_json's parser and its
//! error machinery were, after Leptos, the largest part of the page's WebAssembly. Natively (`cargo test`) the
//! same function uses serde_json; both accept exactly what the shared types' `Deserialize` accepts.

use serde::de::DeserializeOwned;

/// Parses `text` as a `T`; the error is a sentence for the page's notice.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    #[cfg(target_arch = "wasm32")]
    {
        let value = js_sys::JSON::parse(text).map_err(|_| "the answer is not JSON".to_owned())?;
        serde_wasm_bindgen::from_value(value).map_err(|e| e.to_string())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::PoolStatus;
    use common::protocol::ServerMessage;

    #[test]
    fn parses_the_shared_types_and_refuses_the_rest() {
        let pong = parse::<ServerMessage>(
            r#"{"type":"pong","seq":3,"sent_at":12.5,"server_time_ms":9,"pod":"p","extra":1}"#,
        );
        assert!(
            matches!(pong, Ok(ServerMessage::Pong { seq: 3, ref pod, .. }) if pod == "p"),
            "{pong:?}"
        );
        assert!(parse::<ServerMessage>(r#"{"type":"nope"}"#).is_err());
        assert!(parse::<ServerMessage>("not json").is_err());
        assert!(parse::<PoolStatus>("{}").is_err());
    }
}
