//! The edge role: `/ws/session/{id}?token=<route>` proxies a browser's WebSocket to *its own* session pod.
//!
//! The shared ping servers sit behind the ingress; session pods do not (a browser landing on someone else's
//! pod is exactly what must not happen). The provisioner signs a short-lived route `session → pod address` with
//! the route key both read from the same Secret (`common::signing`); the edge checks signature, session and
//! expiry, opens the upstream WebSocket to the address inside, reads its `hello` to check that the pod answering
//! there is the pod named in the route (a pod IP is reused by the next pod), and only then accepts the
//! browser's upgrade, so every refusal is a plain HTTP status with a JSON body. It needs no state and no
//! Kubernetes API access. Writes both ways have the connection's write deadline.
//!
//! Frames are relayed both ways unchanged. The pod's close frame reaches the browser as is; a pod that
//! vanishes without one closes the browser with 1011 `session pod went away` (the page then asks the
//! provisioner for the replacement). When the edge itself drains, the browser gets 1001 and reconnects
//! through another edge replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{self, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use common::api::ApiErrorCode;
use common::error::ApiError;
use common::protocol::ServerMessage;
use common::signing::{SigningError, SigningKey};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::admission::{AppState, HARD_MESSAGE_CEILING, READ_BUFFER_BYTES, not_an_upgrade};
use crate::metrics::{Kind, RelayError};

/// How long the edge waits for a session pod to accept the upstream WebSocket.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The query of an edge request.
#[derive(Debug, Deserialize)]
pub struct RouteQuery {
    token: Option<String>,
}

/// `GET /ws/session/{id}?token=…`.
pub async fn session_websocket(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(session_id): Path<String>,
    Query(query): Query<RouteQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(refused) = state.check_origin(&headers) {
        return state.refuse(refused);
    }
    let Some(key) = state.edge_key() else {
        return state.refuse(ApiError::new(
            ApiErrorCode::EdgeDisabled,
            "this server does not route sessions (it has no signing key)",
        ));
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return state.refuse(not_an_upgrade(rejection)),
    };
    let Some(token) = query.token else {
        return state.refuse(ApiError::new(
            ApiErrorCode::MissingToken,
            "this route needs the `token` the provisioner gave with the session",
        ));
    };
    let claims = match verify(key, &token, &session_id) {
        Ok(claims) => claims,
        Err(refused) => return state.refuse(refused),
    };
    let admission = match state.admit(state.client(peer.ip(), &headers), Kind::Relay) {
        Ok(admission) => admission,
        Err(busy) => return state.refuse(busy),
    };
    let (upstream, hello) = match connect_upstream(&claims.addr, &claims.pod).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::info!(session = %session_id, pod = %claims.pod, error = %e, "session pod unreachable");
            state.metrics.relay_error(RelayError::Unreachable);
            return state.refuse(ApiError::new(
                ApiErrorCode::PodUnreachable,
                "the session's pod does not answer; ask the provisioner for the session's current pod",
            ));
        }
    };
    tracing::info!(session = %session_id, pod = %claims.pod, "routing session");
    let draining = state.draining().clone();
    let write_timeout = state.write_timeout;
    let metrics = state.metrics.clone();
    state.configure(upgrade).on_upgrade(move |browser| async move {
        // Held for the life of the relay: a connection slot, and shutdown waits for it.
        let _admission = admission;
        if let Err(error) = relay(browser, upstream, hello, draining, write_timeout).await {
            metrics.relay_error(error);
        }
    })
}

/// Checks the route token; refusals become 401 responses that say why.
fn verify(key: &SigningKey, token: &str, session_id: &str) -> Result<common::signing::RouteClaims, ApiError> {
    let now_secs = common::runtime::unix_time_ms() / 1000;
    key.verify_route(token, session_id, now_secs).map_err(|e| {
        let (code, message) = match e {
            SigningError::Expired => (
                ApiErrorCode::TokenExpired,
                "the route token has expired; ask the provisioner again",
            ),
            SigningError::WrongSession => (
                ApiErrorCode::InvalidToken,
                "the route token is for another session",
            ),
            _ => (ApiErrorCode::InvalidToken, "the route token is not valid"),
        };
        ApiError::new(code, message)
    })
}

/// Connects to the pod at `addr` and reads its `hello`, which must name `pod`: the address of a pod that is
/// gone may already belong to another one.
async fn connect_upstream(addr: &str, pod: &str) -> anyhow::Result<(Upstream, tungstenite::Message)> {
    let url = format!("ws://{addr}/ws");
    // Small reads, as on the browser side: tungstenite zero-fills its whole read buffer before every read, and
    // its 128 KiB default cost both memory per relayed session and CPU per frame.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(HARD_MESSAGE_CEILING))
        .max_frame_size(Some(HARD_MESSAGE_CEILING));
    let connect = async {
        let (mut upstream, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let text = loop {
            match upstream.next().await {
                Some(Ok(tungstenite::Message::Text(text))) => break text,
                Some(Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_))) => {}
                Some(Ok(other)) => anyhow::bail!("the pod sent {other:?} instead of its hello"),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the pod closed before its hello"),
            }
        };
        match ServerMessage::parse(&text) {
            Ok(ServerMessage::Hello { pod: answered, .. }) if answered.name == pod => {
                Ok((upstream, tungstenite::Message::Text(text)))
            }
            Ok(ServerMessage::Hello { pod: answered, .. }) => {
                anyhow::bail!("{} answers at {addr}, not {pod}", answered.name)
            }
            _ => anyhow::bail!("the pod's first message is not a hello"),
        }
    };
    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {UPSTREAM_CONNECT_TIMEOUT:?}"))?
}

/// Sends `message` within `deadline`; `false` if it could not be (failed, or the reader does not read).
async fn send_within<S, M>(sink: &mut S, message: M, deadline: Duration) -> bool
where
    S: futures_util::Sink<M> + Unpin,
{
    matches!(
        tokio::time::timeout(deadline, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Relays frames both ways, the pod's `hello` first, until either side closes or the edge drains; an error
/// says how the relay broke.
async fn relay(
    browser: WebSocket,
    upstream: Upstream,
    hello: tungstenite::Message,
    draining: CancellationToken,
    write_timeout: Duration,
) -> Result<(), RelayError> {
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_pod, mut from_pod) = upstream.split();
    if let Some(hello) = from_tungstenite(hello)
        && !send_within(&mut to_browser, hello, write_timeout).await
    {
        let _ = to_pod.close().await;
        return Err(RelayError::Write);
    }
    // Registered once, not per frame (each registration locks the token shared by every connection).
    let drained = draining.cancelled();
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = &mut drained => {
                let _ = send_within(&mut to_browser, close(CloseCode::Away.into(), "edge shutting down"), write_timeout).await;
                let _ = to_pod.close().await;
                return Ok(());
            }
            frame = from_browser.next() => match frame {
                Some(Ok(message)) => {
                    let closing = matches!(message, ws::Message::Close(_));
                    let Some(message) = to_tungstenite(message) else { continue };
                    if !send_within(&mut to_pod, message, write_timeout).await {
                        return if closing { Ok(()) } else { Err(RelayError::Write) };
                    }
                    if closing {
                        return Ok(());
                    }
                }
                // The browser left without a close frame.
                _ => {
                    let _ = to_pod.close().await;
                    return Ok(());
                }
            },
            frame = from_pod.next() => match frame {
                Some(Ok(message)) => {
                    let Some(message) = from_tungstenite(message) else { continue };
                    let closing = matches!(message, ws::Message::Close(_));
                    if !send_within(&mut to_browser, message, write_timeout).await {
                        return if closing { Ok(()) } else { Err(RelayError::Write) };
                    }
                    if closing {
                        return Ok(());
                    }
                }
                _ => {
                    let _ = send_within(
                        &mut to_browser,
                        close(CloseCode::Error.into(), "session pod went away"),
                        write_timeout,
                    )
                    .await;
                    return Err(RelayError::PodGone);
                }
            },
        }
    }
}

fn close(code: u16, reason: &'static str) -> ws::Message {
    ws::Message::Close(Some(ws::CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Data and close frames cross the edge; pings and pongs are answered hop by hop (both WebSocket libraries
/// answer pings themselves), so they are not relayed.
fn to_tungstenite(message: ws::Message) -> Option<tungstenite::Message> {
    Some(match message {
        ws::Message::Text(text) => tungstenite::Message::text(text.as_str()),
        ws::Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
        ws::Message::Close(frame) => {
            tungstenite::Message::Close(frame.map(|f| tungstenite::protocol::CloseFrame {
                code: CloseCode::from(f.code),
                reason: f.reason.as_str().into(),
            }))
        }
    })
}

fn from_tungstenite(message: tungstenite::Message) -> Option<ws::Message> {
    Some(match message {
        tungstenite::Message::Text(text) => ws::Message::Text(text.as_str().into()),
        tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
        tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => return None,
        tungstenite::Message::Close(frame) => ws::Message::Close(frame.map(|f| ws::CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        // Raw frames only appear when writing; never read.
        tungstenite::Message::Frame(_) => return None,
    })
}
