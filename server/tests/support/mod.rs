//! Test harness: a real ping server on `127.0.0.1:0`, talked to with the test kit's WebSocket client.

#![allow(dead_code)]

use std::net::SocketAddr;

use clap::Parser;
use common::protocol::ServerMessage;
use server::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use testkit::wait::WAIT;
pub use testkit::ws::WsClient as Client;

/// A running server plus the handle to shut it down through the same path SIGTERM takes.
pub struct TestServer {
    pub address: SocketAddr,
    /// Its pod name (what its `hello` says).
    pub name: String,
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
            name: pod_name.to_owned(),
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
        let hello = client.next_message().await.unwrap();
        (client, hello)
    }

    pub async fn try_connect(&self) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        self.connect_path("/ws", None).await
    }

    /// Opens a WebSocket to `path` (e.g. an edge route), optionally from a browser `origin`.
    pub async fn connect_path(
        &self,
        path: &str,
        origin: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        Client::connect_from(&format!("ws://{}{path}", self.address), origin).await
    }

    /// Opens a WebSocket to `/ws` from the local address `source` and returns it with the `hello` already read.
    pub async fn connect_as(
        &self,
        source: std::net::IpAddr,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let url = format!("ws://{}/ws", self.address);
        let mut client = Client::connect_with(&url, Some(source), &[]).await?;
        client.hello().await.expect("hello");
        Ok(client)
    }

    /// Connects as a browser page from `origin` would.
    pub async fn connect_from(&self, origin: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        self.connect_path("/ws", Some(origin)).await
    }
}
