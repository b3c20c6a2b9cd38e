//! HTTP API bodies shared by the services and the web page.
//!
//! Every error response of every service is an [`ErrorBody`]: `{"error":<code>,"message":<text>}`, so a client
//! handles failures one way whatever answered. The provisioner's session API (`POST /session`,
//! `GET /session/{id}`, `POST /session/{id}/kill`, `GET /pool`) and the ping server's `/activity` report are
//! described here, next to each other, because the page and both services must agree on them.

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

/// Optional body of `POST /session`. An empty body is the same as `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// Free-form name of the client (e.g. `"web/0.1.0"`), for logs only; at most 64 characters.
    #[serde(default)]
    pub client: Option<String>,
}

/// The pod a session is connected to, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPod {
    /// Pod name; the pod's WebSocket `hello` names exactly this.
    pub name: String,
    /// Friendly name derived from [`SessionPod::name`] by [`crate::names::display_name`].
    pub display_name: String,
    /// Node the pod runs on, when known.
    pub node: Option<String>,
}

/// Where a session's pod came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionSource {
    /// Taken from the warm pool: already running and ready.
    Warm,
    /// Started for this request because the pool was empty.
    Cold,
}

/// Body of `201 Created` from `POST /session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateSessionResponse {
    /// Identifies the session in the other endpoints.
    pub session_id: String,
    /// Bearer token for `GET`/`DELETE /session/{id}` and `POST /session/{id}/kill`. Keep it secret.
    pub token: String,
    /// The session's own pod.
    pub pod: SessionPod,
    /// Absolute `ws://` or `wss://` URL that reaches [`CreateSessionResponse::pod`].
    pub websocket_url: String,
    /// Whether the pod came from the warm pool.
    pub source: ProvisionSource,
    /// Time the provisioner spent finding the pod, in milliseconds.
    pub provision_ms: f64,
}

/// Lifecycle state of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The session has a ready pod.
    Active,
    /// The session's pod is gone and a replacement is on its way.
    Replacing,
    /// The session is over (deleted, idle, too old); its pod is gone.
    Ended,
}

/// Body of `GET /session/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The session.
    pub session_id: String,
    /// Where it is in its lifecycle.
    pub state: SessionState,
    /// Its current pod, `null` while replacing or once ended.
    pub pod: Option<SessionPod>,
    /// URL of the current pod, `null` while replacing or once ended.
    pub websocket_url: Option<String>,
    /// How many times the session got a new pod after losing one.
    pub replacements: u32,
}

/// Body of `202 Accepted` from `POST /session/{id}/kill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillResponse {
    /// Name of the pod that was terminated.
    pub killed: String,
}

/// Body of `GET /pool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Warm pods the pool aims to keep ready.
    pub target: u32,
    /// Ready pods waiting for a session.
    pub warm: u32,
    /// Pods started but not ready yet.
    pub starting: u32,
    /// Pods serving a session.
    pub assigned: u32,
    /// Most sessions at once.
    pub max_sessions: u32,
}

/// Body of the ping server's `GET /activity`: what the provisioner polls to end idle sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityBody {
    /// Open WebSocket connections.
    pub connections: u32,
    /// Wall-clock time (Unix ms) of the last frame received from any client, or of start-up if none yet.
    pub last_activity_ms: u64,
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

    #[test]
    fn session_bodies_have_the_documented_shape() {
        let created = CreateSessionResponse {
            session_id: "abc".into(),
            token: "t".into(),
            pod: SessionPod {
                name: "session-1".into(),
                display_name: "Swift-Falcon-123".into(),
                node: None,
            },
            websocket_url: "ws://127.0.0.1:1/ws".into(),
            source: ProvisionSource::Warm,
            provision_ms: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            serde_json::json!({"session_id":"abc","token":"t",
                "pod":{"name":"session-1","display_name":"Swift-Falcon-123","node":null},
                "websocket_url":"ws://127.0.0.1:1/ws","source":"warm","provision_ms":1.5})
        );
        let status = SessionStatus {
            session_id: "abc".into(),
            state: SessionState::Replacing,
            pod: None,
            websocket_url: None,
            replacements: 2,
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"session_id":"abc","state":"replacing","pod":null,"websocket_url":null,"replacements":2})
        );
        let back: SessionStatus = serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn create_request_accepts_empty_object_and_rejects_unknown_fields() {
        assert_eq!(
            serde_json::from_str::<CreateSessionRequest>("{}").unwrap(),
            CreateSessionRequest::default()
        );
        assert!(serde_json::from_str::<CreateSessionRequest>(r#"{"pods":100}"#).is_err());
        assert!(serde_json::from_str::<CreateSessionRequest>(r#"{"client":5}"#).is_err());
    }
}
