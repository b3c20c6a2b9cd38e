//! PROTOCOL.md is the human-readable list of every error code: each code of both typed vocabularies
//! (`ApiErrorCode` on HTTP, `ErrorCode` on the WebSocket) must appear there, in backticks, with its status.

use common::api::ApiErrorCode;
use common::protocol::ErrorCode;

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

#[test]
fn every_http_error_code_is_documented_with_its_status() {
    let doc = protocol_md();
    let missing: Vec<&str> = ApiErrorCode::ALL
        .iter()
        .filter(|code| {
            let row = format!("| `{}` | {}", code.as_str(), code.status());
            !doc.contains(&row)
        })
        .map(|code| code.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "PROTOCOL.md lacks a row `| `code` | status` for {missing:?}"
    );
}

#[test]
fn every_websocket_error_code_is_documented() {
    let doc = protocol_md();
    for code in ErrorCode::ALL {
        let wire = serde_json::to_value(code).unwrap_or_default();
        let wire = wire.as_str().unwrap_or_default();
        assert!(!wire.is_empty(), "{code:?} has no wire name");
        assert!(
            doc.contains(&format!("`{wire}`")),
            "PROTOCOL.md does not list `{wire}`"
        );
    }
}
