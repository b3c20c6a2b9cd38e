//! One WebSocket connection, from `hello` to close.
//!
//! The loop moves frames between the socket and the [`Responder`], and watches two timers: the idle timeout and
//! the server's shutdown. Every write has a deadline (`write_timeout`): a client that sends but never reads fills
//! its socket's buffers, and the write that would wait for it forever closes the connection instead, so the
//! idle timer and shutdown are never kept from it for longer than that. Both end the connection the polite way, with a `goodbye` and a close frame. A ping
//! sent before the client could know of the shutdown is still answered: on shutdown the loop answers every frame
//! already buffered, says goodbye, keeps answering for a short linger, then closes with 1001.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use common::protocol::{GoodbyeReason, PROTOCOL_VERSION, ServerMessage};
use futures_util::FutureExt;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::activity::Activity;
use crate::handler::{Action, Frame, Responder};
use crate::identity::Identity;
use crate::metrics::{Metrics, PingTally};
use common::runtime::unix_time_ms as now_ms;

/// Close code for a normal closure (idle timeout).
const CLOSE_NORMAL: u16 = 1000;
/// Close code for "going away" (server shutdown).
const CLOSE_GOING_AWAY: u16 = 1001;
/// After `goodbye shutdown`, how long pings still in flight are answered before the close frame. A client that
/// closes on `goodbye` (the web page does) ends this at once.
const SHUTDOWN_LINGER: Duration = Duration::from_millis(500);
/// How long to wait for the client's answer to our close frame before dropping the socket.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a connection needs besides its socket.
pub struct Connection {
    /// Who we are, for `hello`.
    pub identity: Arc<Identity>,
    /// The protocol rules and this connection's rate limiter.
    pub responder: Responder,
    /// Silence allowed before `goodbye idle`.
    pub idle_timeout: Duration,
    /// The longest one frame may take to be written.
    pub write_timeout: Duration,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Where this connection reports that it is open and active.
    pub activity: Arc<Activity>,
    /// Where pings and protocol errors are counted.
    pub metrics: Arc<Metrics>,
}

/// What the loop does after one received message.
enum Step {
    Continue,
    Close(u16, &'static str),
    Gone,
}

impl Connection {
    /// Serves the connection until the client leaves, it idles out, or the server shuts down.
    pub async fn run(self, mut socket: WebSocket) {
        let activity = self.activity.clone();
        let _open = activity.open();
        let tally = PingTally::new(&self.metrics);
        let hello = ServerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            pod: self.identity.pod.clone(),
            session_id: self.identity.session_id.clone(),
            server_time_ms: now_ms(),
        };
        if send(&mut socket, &hello, self.write_timeout).await.is_err() {
            return;
        }
        let idle = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle);
        // Registered once: a fresh `cancelled()` per message would lock the token's waiter list twice per ping.
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(shutdown);
        loop {
            let step = tokio::select! {
                // Frames first: a ping that is already here is answered before anything else happens.
                biased;
                received = socket.recv() => {
                    idle.as_mut().reset(Instant::now() + self.idle_timeout);
                    self.handle(&mut socket, received, &tally).await
                }
                () = &mut shutdown => return self.leave(socket, &tally).await,
                () = &mut idle => {
                    goodbye(socket, GoodbyeReason::Idle, CLOSE_NORMAL, "idle", self.write_timeout).await;
                    return;
                }
            };
            match step {
                Step::Continue => {}
                Step::Close(code, reason) => return close(socket, code, reason, self.write_timeout).await,
                Step::Gone => return,
            }
        }
    }

    /// The shutdown path: answer what already arrived, say goodbye, keep answering while the client may still
    /// have pings in flight (it has not seen the goodbye yet), then close with 1001.
    async fn leave(&self, mut socket: WebSocket, tally: &PingTally<'_>) {
        // Let the runtime poll the I/O driver once, so bytes already in the socket buffer are seen as readable.
        tokio::task::yield_now().await;
        while let Some(received) = socket.recv().now_or_never() {
            match self.handle(&mut socket, received, tally).await {
                Step::Continue => {}
                Step::Close(code, reason) => return close(socket, code, reason, self.write_timeout).await,
                Step::Gone => return,
            }
        }
        let goodbye = ServerMessage::Goodbye {
            reason: GoodbyeReason::Shutdown,
        };
        if send(&mut socket, &goodbye, self.write_timeout).await.is_err() {
            return;
        }
        let linger = tokio::time::sleep(SHUTDOWN_LINGER);
        tokio::pin!(linger);
        loop {
            tokio::select! {
                received = socket.recv() => match self.handle(&mut socket, received, tally).await {
                    Step::Continue => {}
                    Step::Close(code, reason) => return close(socket, code, reason, self.write_timeout).await,
                    // A polite client closes as soon as it reads the goodbye.
                    Step::Gone => return,
                },
                () = &mut linger => break,
            }
        }
        close(
            socket,
            CLOSE_GOING_AWAY,
            "server shutting down",
            self.write_timeout,
        )
        .await;
    }

    async fn handle(
        &self,
        socket: &mut WebSocket,
        received: Option<Result<Message, axum::Error>>,
        tally: &PingTally<'_>,
    ) -> Step {
        let message = match received {
            Some(Ok(message)) => {
                self.activity.touch();
                message
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket read failed");
                return Step::Gone;
            }
            None => return Step::Gone,
        };
        let started = tally.start();
        let action = match &message {
            Message::Text(text) => self.responder.on_frame(Frame::Text(text.as_str())),
            Message::Binary(bytes) => self.responder.on_frame(Frame::Binary(bytes.len())),
            // Control frames: tungstenite answers pings and close frames itself; the next `recv` after a close
            // returns `None`, which ends the loop.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Step::Continue,
        };
        match action {
            Action::Reply(reply) => {
                let sent = send(socket, &reply, self.write_timeout).await;
                match &reply {
                    ServerMessage::Pong { .. } if sent.is_ok() => tally.answered(started),
                    ServerMessage::Error { code, .. } => self.metrics.protocol_error(*code),
                    _ => {}
                }
                match sent {
                    Ok(()) => Step::Continue,
                    Err(()) => Step::Gone,
                }
            }
            Action::Close(code, reason) => Step::Close(code, reason),
        }
    }
}

async fn send(socket: &mut WebSocket, message: &ServerMessage, deadline: Duration) -> Result<(), ()> {
    write(socket, Message::Text(message.to_json().into()), deadline).await
}

/// Writes one frame within `deadline`; a client that does not read long enough loses its connection.
async fn write(socket: &mut WebSocket, frame: Message, deadline: Duration) -> Result<(), ()> {
    match timeout(deadline, socket.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "websocket send failed");
            Err(())
        }
        Err(_) => {
            tracing::debug!(?deadline, "the client does not read; closing its connection");
            Err(())
        }
    }
}

async fn goodbye(
    mut socket: WebSocket,
    reason: GoodbyeReason,
    code: u16,
    text: &'static str,
    deadline: Duration,
) {
    if send(&mut socket, &ServerMessage::Goodbye { reason }, deadline)
        .await
        .is_ok()
    {
        close(socket, code, text, deadline).await;
    }
}

/// Sends a close frame and waits (briefly) for the client's close frame, completing the handshake.
async fn close(mut socket: WebSocket, code: u16, reason: &'static str, deadline: Duration) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if write(&mut socket, Message::Close(Some(frame)), deadline)
        .await
        .is_err()
    {
        return;
    }
    let _ = timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}
