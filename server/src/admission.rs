//! Who gets a WebSocket here, and on what terms: the state every request shares ([`AppState`]), the admission
//! rules both WebSocket routes apply before upgrading (allowed browser origins, no new connections while
//! draining, at most `max_connections` at once and `max_connections_per_client` per client, the client seen
//! through the trusted proxies), and the one upgrade set-up with the buffer sizes and message limits every
//! socket gets. `/ws` ([`crate::routes`]) and the edge's `/ws/session/{id}` ([`crate::edge`]) both
//! come through here, so the two can never admit or size sockets differently.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{OnFailedUpgrade, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use common::api::ApiErrorCode;
use common::client::{ClientFlags, ClientKey, ClientShare, ClientShares};
use common::error::ApiError;
use common::signing::SigningKey;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::Config;
use crate::activity::Activity;
use crate::identity::Identity;
use crate::metrics::{Kind, Metrics, OpenConnection};

/// Read buffer of each WebSocket. tungstenite's default (128 KiB) would make an idle connection cost more than
/// 100 KiB; a message is at most 1 KiB, so 2 KiB reads any of them at once (measured: 7.1 KiB per idle
/// connection in all, against 10.5 KiB with 4 KiB; see BENCHMARKS.md).
pub const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Hard ceiling on what tungstenite buffers for one message. Messages between the protocol limit and this one
/// get a clean close 1009 from [`crate::handler`]; anything beyond is cut off by tungstenite itself.
pub const HARD_MESSAGE_CEILING: usize = 64 * 1024;

/// State shared by every request.
pub struct AppState {
    /// Who this server is.
    pub identity: Arc<Identity>,
    /// The protocol's message size limit.
    pub max_message_bytes: usize,
    /// Messages per second allowed on one connection.
    pub max_pings_per_second: NonZeroU32,
    /// Silence allowed on a connection before `goodbye idle`.
    pub idle_timeout: Duration,
    /// The longest a frame may take to be written before its connection is closed.
    pub write_timeout: Duration,
    /// What the provisioner reads on `/activity`.
    pub activity: Arc<Activity>,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    connection_slots: Arc<Semaphore>,
    per_client: Arc<ClientShares>,
    clients: ClientFlags,
    draining: CancellationToken,
    connections: TaskTracker,
    allowed_origins: Vec<String>,
    localhost_origins: bool,
    edge_key: Option<SigningKey>,
}

/// What an admitted WebSocket holds for its whole life: its place in `server_connections`, a connection slot (counted against
/// `max_connections`), its client's share (counted against `max_connections_per_client`), and a token shutdown
/// waits for.
pub struct Admission {
    _open: OpenConnection,
    _slot: OwnedSemaphorePermit,
    _share: ClientShare,
    _tracked: TaskTrackerToken,
}

impl AppState {
    /// Builds the state from the configuration; `draining` is cancelled when shutdown begins and
    /// `connections` tracks every WebSocket task. `edge_key` enables the edge route.
    pub fn new(
        config: &Config,
        edge_key: Option<SigningKey>,
        draining: CancellationToken,
        connections: TaskTracker,
    ) -> Self {
        Self {
            edge_key,
            identity: Arc::new(Identity::from_config(config)),
            max_message_bytes: config.max_message_bytes,
            max_pings_per_second: config.max_pings_per_second,
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
            connection_slots: Arc::new(Semaphore::new(config.max_connections)),
            per_client: ClientShares::new(config.max_connections_per_client),
            clients: config.client.clone(),
            draining,
            connections,
            activity: Arc::default(),
            metrics: Arc::default(),
            allowed_origins: config.allowed_origins.clone(),
            localhost_origins: !config.no_localhost_origins,
        }
    }

    /// The key that checks route tokens, when this server is an edge.
    pub fn edge_key(&self) -> Option<&SigningKey> {
        self.edge_key.as_ref()
    }

    /// Cancelled when shutdown begins.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Browsers apply no CORS to WebSockets: a page on any site could open one here with its user's network
    /// position. Only allowed origins may; clients that send no Origin are not browsers and pass.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !common::origin::allowed(origin, &self.allowed_origins, self.localhost_origins) {
                return Err(ApiError::new(
                    ApiErrorCode::OriginNotAllowed,
                    format!("pages from {origin:?} may not open WebSockets here"),
                ));
            }
        }
        Ok(())
    }

    /// The client of a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        self.clients.client(peer, headers)
    }

    /// A refusal's answer, counted in `server_refusals_total` by its code.
    pub fn refuse(&self, refusal: ApiError) -> Response {
        self.metrics.refused(refusal.code());
        refusal.into_response()
    }

    /// Admits one more WebSocket of `kind` from `client`, or refuses with 503 + `Retry-After` (draining, or at
    /// the connection limit) or 429 (the client holds its share).
    pub fn admit(&self, client: ClientKey, kind: Kind) -> Result<Admission, ApiError> {
        let busy = |code, message| ApiError::new(code, message).retry_after(Duration::from_secs(1));
        if self.draining.is_cancelled() {
            return Err(busy(
                ApiErrorCode::Draining,
                "this server is shutting down; connect again to reach another one",
            ));
        }
        let Some(share) = self.per_client.take(client) else {
            return Err(ApiError::new(
                ApiErrorCode::TooManyClientConnections,
                "your address holds as many connections to this server as one address may; close one",
            )
            .retry_after(Duration::from_secs(5)));
        };
        let Ok(slot) = self.connection_slots.clone().try_acquire_owned() else {
            return Err(busy(
                ApiErrorCode::TooManyConnections,
                "this server is at its connection limit; try again shortly",
            ));
        };
        Ok(Admission {
            _open: self.metrics.open(kind),
            _slot: slot,
            _share: share,
            _tracked: self.connections.token(),
        })
    }

    /// The upgrade of an admitted WebSocket, with the buffer and message limits every socket here gets: the
    /// same on `/ws` and on the edge, so a message a pod accepts is never cut off on its way through the edge.
    pub fn configure(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade<impl OnFailedUpgrade> {
        let ceiling = HARD_MESSAGE_CEILING.max(self.max_message_bytes);
        upgrade
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(ceiling)
            .max_frame_size(ceiling)
            .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
    }
}

/// A request to a WebSocket route that is not a valid upgrade: the rejection's status and reason, in the
/// JSON error body every refusal has.
pub fn not_an_upgrade(rejection: WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(ApiErrorCode::WebsocketUpgradeRequired, rejection.body_text())
        .with_status(rejection.status())
}
