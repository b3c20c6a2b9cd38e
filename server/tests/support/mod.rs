//! Test harness: a real ping server on `127.0.0.1:0` and a real WebSocket client (tokio-tungstenite).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::protocol::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use server::Config;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait in these tests; generous so a loaded CI machine never flakes, and only
/// reached when something is actually broken.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server plus the handle to shut it down through the same path SIGTERM takes.
pub struct TestServer {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Starts a server with these extra flags (on top of `--pod-name test-pod`).
    pub async fn start(flags: &[&str]) -> Self {
        Self::start_named("test-pod", flags).await
    }

    /// Starts a server called `pod_name` with these extra flags.
    pub async fn start_named(pod_name: &str, flags: &[&str]) -> Self {
        let mut args = vec!["server", "--pod-name", pod_name, "--node-name", "node-1"];
        args.extend_from_slice(flags);
        let config = Config::try_parse_from(args).expect("valid test flags");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server::run(config, listener, async {
            let _ = rx.await;
        }));
        Self {
            address,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Triggers graceful shutdown (what SIGTERM does in `main`).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return.
    pub async fn finished(self) -> anyhow::Result<()> {
        tokio::time::timeout(WAIT * 3, self.task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked")
    }

    /// Opens a WebSocket to `/ws` and returns it with the `hello` already read.
    pub async fn connect(&self) -> (Client, ServerMessage) {
        let mut client = self.try_connect().await.expect("websocket upgrade");
        let hello = client.next_message().await;
        (client, hello)
    }

    pub async fn try_connect(&self) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.address)).await?;
        Ok(Client { ws })
    }

    /// Opens a WebSocket to `path` (e.g. an edge route), optionally from a browser `origin`.
    pub async fn connect_path(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}{path}", self.address).into_client_request()?;
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws })
    }

    /// Connects as a browser page from `origin` would.
    pub async fn connect_from(&self, origin: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}/ws", self.address).into_client_request()?;
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header value"));
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws })
    }
}

/// A WebSocket client speaking the ping protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the client saw next: a protocol message or the close frame.
#[derive(Debug)]
pub enum Event {
    Message(ServerMessage),
    Closed(Option<CloseFrame>),
}

impl Client {
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    pub async fn ping(&mut self, seq: u64, sent_at: f64) {
        self.send_text(&ClientMessage::Ping { seq, sent_at }.to_json())
            .await;
    }

    /// The next protocol message or close, skipping control frames.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for the server");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Event::Message(ServerMessage::parse(&text).expect("valid server message"));
                }
                Some(Ok(Message::Close(frame))) => return Event::Closed(frame),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => return Event::Closed(None),
            }
        }
    }

    pub async fn next_message(&mut self) -> ServerMessage {
        match self.next_event().await {
            Event::Message(message) => message,
            Event::Closed(frame) => panic!("connection closed: {frame:?}"),
        }
    }

    /// Reads until the close frame and returns its code.
    pub async fn close_code(&mut self) -> u16 {
        match self.next_event().await {
            Event::Closed(Some(frame)) => frame.code.into(),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
