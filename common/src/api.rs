//! HTTP API bodies shared by the services and the web page.
//!
//! Every error response of every service is an [`ErrorBody`]: `{"error":<code>,"message":<text>}`, so a client
//! handles failures one way whatever answered.

use serde::{Deserialize, Serialize};

/// The JSON body of every HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code in `snake_case`, e.g. `at_capacity`.
    pub error: String,
    /// A sentence for humans.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body from a code and a message.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
        }
    }
}

/// Body of `GET /health` on both services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBody {
    /// `"ok"` when alive, `"draining"` on `/ready` during shutdown.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_json_shape() {
        let body = ErrorBody::new("at_capacity", "the demo is full");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error":"at_capacity","message":"the demo is full"})
        );
        let back: ErrorBody = serde_json::from_str(r#"{"error":"x","message":"y"}"#).unwrap();
        assert_eq!(back, ErrorBody::new("x", "y"));
        assert!(serde_json::from_str::<ErrorBody>(r#"{"error":"x"}"#).is_err());
    }
}
