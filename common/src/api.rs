//! HTTP API bodies shared by the services and the web page.
//!
//! Every error response of every service is an [`ErrorBody`]: `{"error":<code>,"message":<text>}`, so a client
//! handles failures one way whatever answered. The provisioner's session API (`POST /session`,
//! `GET /session/{id}`, `POST /session/{id}/kill`, `GET /pool`) and the ping server's `/activity` report are
//! described here, next to each other, because the page and both services must agree on them.

use serde::{Deserialize, Serialize};

use crate::ids::{PodName, SessionId};

/// Declares [`ApiErrorCode`]: each code with its wire string and its usual HTTP status, written once. The
/// macro also lists every code in [`ApiErrorCode::ALL`], so documentation tests cannot miss one.
macro_rules! api_error_codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal, $status:literal;)+) => {
        /// The machine-readable code of every HTTP error answer of every service (the `error` field of an
        /// [`ErrorBody`]). Clients tell errors apart by this code, never by the message text. `PROTOCOL.md`
        /// lists them all.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ApiErrorCode {
            $($(#[$doc])* #[serde(rename = $wire)] $variant,)+
            /// A code this build does not know (a newer service); only ever read, never sent.
            #[serde(other, rename = "unknown")]
            Unknown,
        }

        impl ApiErrorCode {
            /// Every code a service sends.
            pub const ALL: &[ApiErrorCode] = &[$(ApiErrorCode::$variant,)+];

            /// The code as it travels (`snake_case`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ApiErrorCode::$variant => $wire,)+
                    ApiErrorCode::Unknown => "unknown",
                }
            }

            /// The HTTP status this code is normally answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ApiErrorCode::$variant => $status,)+
                    ApiErrorCode::Unknown => 500,
                }
            }
        }
    };
}

api_error_codes! {
    /// The request is malformed (bad JSON body, bad path, missing fields).
    BadRequest = "bad_request", 400;
    /// The session endpoint needs the session's bearer token, and this one is missing, malformed or wrong.
    Unauthorized = "unauthorized", 401;
    /// The token is right but the session is unknown (never existed here, or forgotten long ago).
    SessionNotFound = "session_not_found", 404;
    /// The request body is larger than the limit.
    PayloadTooLarge = "payload_too_large", 413;
    /// The request body did not arrive in time.
    RequestTimeout = "request_timeout", 408;
    /// Every session slot is taken.
    AtCapacity = "at_capacity", 429;
    /// This client (its address) already holds its share of sessions.
    TooManySessions = "too_many_sessions", 429;
    /// The request's `Host` is not one this service answers to (a DNS-rebinding page).
    HostNotAllowed = "host_not_allowed", 403;
    /// This client already holds its share of WebSocket connections on this server.
    TooManyClientConnections = "too_many_client_connections", 429;
    /// Too many requests from this client; wait for `Retry-After`.
    RateLimited = "rate_limited", 429;
    /// No pod became ready within the cold-start timeout.
    ColdStartTimeout = "cold_start_timeout", 504;
    /// The session is over.
    SessionEnded = "session_ended", 409;
    /// The pod was killed moments ago; wait for `Retry-After`.
    KillCooldown = "kill_cooldown", 429;
    /// The session has no pod right now (its replacement is on its way).
    NoPod = "no_pod", 409;
    /// The provisioner is shutting down.
    ShuttingDown = "shutting_down", 503;
    /// Wherever pods run cannot be reached or refused.
    BackendUnavailable = "backend_unavailable", 503;
    /// No such endpoint (or file).
    NotFound = "not_found", 404;
    /// The endpoint exists but does not take this method.
    MethodNotAllowed = "method_not_allowed", 405;
    /// The body's content type is not accepted.
    UnsupportedMediaType = "unsupported_media_type", 415;
    /// Something failed inside the service.
    InternalError = "internal_error", 500;
    /// A WebSocket route was asked without a valid WebSocket upgrade.
    WebsocketUpgradeRequired = "websocket_upgrade_required", 400;
    /// The ping server is shutting down and takes no new WebSockets.
    Draining = "draining", 503;
    /// The ping server is at its connection limit.
    TooManyConnections = "too_many_connections", 503;
    /// The request comes from a browser page whose origin is not allowed.
    OriginNotAllowed = "origin_not_allowed", 403;
    /// This ping server is not an edge (it has no signing key).
    EdgeDisabled = "edge_disabled", 404;
    /// The edge route needs the `token` query parameter.
    MissingToken = "missing_token", 401;
    /// The route token is forged, malformed, or for another session.
    InvalidToken = "invalid_token", 401;
    /// The route token has expired.
    TokenExpired = "token_expired", 401;
    /// The session's pod does not answer at the routed address.
    PodUnreachable = "pod_unreachable", 502;
}

impl ApiErrorCode {
    /// The code for an error answer that carries only a status (from a layer that knows no code).
    pub fn for_status(status: u16) -> Self {
        match status {
            400 => Self::BadRequest,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            408 => Self::RequestTimeout,
            413 => Self::PayloadTooLarge,
            415 => Self::UnsupportedMediaType,
            429 => Self::RateLimited,
            s if (400..500).contains(&s) => Self::BadRequest,
            _ => Self::InternalError,
        }
    }
}

impl std::fmt::Display for ApiErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `at_capacity`.
    pub error: ApiErrorCode,
    /// A sentence for humans.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body from a code and a message.
    pub fn new(error: ApiErrorCode, message: impl Into<String>) -> Self {
        Self {
            error,
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
    pub name: PodName,
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

impl ProvisionSource {
    /// The wire name: `warm` or `cold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warm => "warm",
            Self::Cold => "cold",
        }
    }
}

/// Body of `201 Created` from `POST /session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateSessionResponse {
    /// Identifies the session in the other endpoints.
    pub session_id: SessionId,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The session.
    pub session_id: SessionId,
    /// Where it is in its lifecycle.
    pub state: SessionState,
    /// Its current pod, `null` while replacing or once ended.
    pub pod: Option<SessionPod>,
    /// URL of the current pod, `null` while replacing or once ended.
    pub websocket_url: Option<String>,
    /// How many times the session got a new pod after losing one.
    pub replacements: u32,
    /// The provisioner's steps of the session's last kill, if it was killed.
    #[serde(default)]
    pub last_kill: Option<KillTimings>,
}

/// Body of `202 Accepted` from `POST /session/{id}/kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillResponse {
    /// Name of the pod that was terminated.
    pub killed: PodName,
    /// The replacement, when one was assigned before the answer (a warm pod): the page reconnects at once.
    #[serde(default)]
    pub replacement: Option<SessionPod>,
    /// Its WebSocket URL, with the replacement.
    #[serde(default)]
    pub websocket_url: Option<String>,
    /// The provisioner's own steps, as durations since it accepted the kill.
    pub timings: KillTimings,
}

/// A kill's steps as the provisioner saw them, each in milliseconds since it accepted the kill. Durations on
/// the provisioner's clock only: the page never subtracts one clock's reading from another's.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct KillTimings {
    /// When the replacement pod was assigned (`null` while none has been).
    pub replacement_assigned_ms: Option<f64>,
    /// When the kill was answered (only in the kill's own answer).
    #[serde(default)]
    pub answered_ms: Option<f64>,
}

/// What a pod of the pool is doing, as the page's pod board shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoardState {
    /// Created, not ready yet.
    Starting,
    /// Ready, waiting for a session.
    Warm,
    /// Serving a session (or being claimed for one).
    Assigned,
    /// Being terminated.
    Terminating,
}

/// One pod on the pod board. Nothing private: no session id, token or address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardPod {
    /// Pod name (a visitor's own pod is the one its session names).
    pub name: PodName,
    /// What it is doing.
    pub state: BoardState,
    /// Milliseconds since it was created, when the event was sent.
    pub age_ms: u64,
    /// Node it runs on, when known.
    pub node: Option<String>,
}

/// One event of `GET /pool/events` (server-sent events, JSON `data`): a snapshot first, then changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PoolEvent {
    /// Every pod, and the pool's sizes.
    Snapshot {
        /// Every pod, by name.
        pods: Vec<BoardPod>,
        /// Warm pods the pool aims to keep ready.
        target: u32,
        /// Most sessions at once.
        max_sessions: u32,
    },
    /// A pod appeared or changed.
    Pod {
        /// The pod as it is now.
        pod: BoardPod,
    },
    /// A pod is gone.
    Gone {
        /// Its name.
        name: PodName,
    },
}

/// Body of `GET /info`: what the page needs to know besides its session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoBody {
    /// WebSocket URLs of the shared, load-balanced ping servers (the page's second series), if any.
    pub shared: Vec<String>,
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

/// Body of the ping server's `GET /activity`: what the provisioner polls to end unused sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityBody {
    /// Open WebSocket connections.
    pub connections: u32,
    /// WebSocket connections accepted since the server started (0 from an older server).
    #[serde(default)]
    pub opened_total: u64,
    /// Wall-clock time (Unix ms) of the last frame received from any client, or of start-up if none yet.
    pub last_activity_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_json_shape() {
        let body = ErrorBody::new(ApiErrorCode::AtCapacity, "the demo is full");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error":"at_capacity","message":"the demo is full"})
        );
        let back: ErrorBody = serde_json::from_str(r#"{"error":"no_pod","message":"y"}"#).unwrap();
        assert_eq!(back, ErrorBody::new(ApiErrorCode::NoPod, "y"));
        assert!(serde_json::from_str::<ErrorBody>(r#"{"error":"no_pod"}"#).is_err());
        // A code from a newer service is read as `Unknown`, not refused.
        let newer: ErrorBody = serde_json::from_str(r#"{"error":"brand_new","message":"y"}"#).unwrap();
        assert_eq!(newer.error, ApiErrorCode::Unknown);
    }

    #[test]
    fn every_error_code_is_snake_case_with_a_client_or_server_error_status() {
        let mut seen = std::collections::HashSet::new();
        for &code in ApiErrorCode::ALL {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, serde_json::json!(code.as_str()));
            assert!(
                code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
            assert_eq!(serde_json::from_value::<ApiErrorCode>(wire).unwrap(), code);
            assert!((400..600).contains(&code.status()), "{code}");
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
        assert!(!ApiErrorCode::ALL.contains(&ApiErrorCode::Unknown));
        assert_eq!(ApiErrorCode::for_status(413), ApiErrorCode::PayloadTooLarge);
        assert_eq!(ApiErrorCode::for_status(418), ApiErrorCode::BadRequest);
        assert_eq!(ApiErrorCode::for_status(502), ApiErrorCode::InternalError);
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
            last_kill: None,
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"session_id":"abc","state":"replacing","pod":null,"websocket_url":null,"replacements":2,"last_kill":null})
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
