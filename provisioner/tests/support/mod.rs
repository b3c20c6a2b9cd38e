//! Test harness: the real provisioner with the real local backend (child processes of the real `server`
//! binary), driven by real HTTP clients and the test kit's WebSocket client.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use provisioner::Config;
use provisioner::backend::local::{LocalBackend, LocalConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The signing key every test provisioner uses, so tests can make valid tokens for any session id.
pub const SIGNING_KEY: &str = "test-signing-key-test-signing-key-0123456789";

/// The token of session `id` under [`SIGNING_KEY`].
pub fn token_for(id: impl AsRef<str>) -> String {
    common::signing::SigningKey::new(SIGNING_KEY.as_bytes())
        .unwrap()
        .session_token(id.as_ref())
}

pub use testkit::wait::WAIT;

/// The `server` binary, built once per test run so it is never stale.
pub fn server_bin() -> PathBuf {
    testkit::bin::workspace_binary("server", "server").expect("the server binary")
}

/// A running provisioner, in process, over backend `B`.
pub struct TestProvisioner<B = LocalBackend> {
    pub address: SocketAddr,
    pub backend: B,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The configuration from these flags on top of a fast resync and [`SIGNING_KEY`].
pub fn config(flags: &[&str]) -> Config {
    let mut args = vec![
        "provisioner",
        "--bind",
        "127.0.0.1",
        "--resync-interval",
        "500ms",
        "--signing-key",
        SIGNING_KEY,
    ];
    args.extend_from_slice(flags);
    Config::try_parse_from(args).expect("valid flags")
}

impl TestProvisioner<LocalBackend> {
    /// Starts one over the local backend with these flags (see [`config`]).
    pub async fn start(flags: &[&str]) -> Self {
        let bin = server_bin();
        let config = config(flags);
        let (events, receiver) = mpsc::unbounded_channel();
        let backend = LocalBackend::new(
            LocalConfig {
                server_bin: bin,
                public_host: "127.0.0.1".into(),
                start_timeout: Duration::from_secs(15),
                allowed_origins: Vec::new(),
                localhost_origins: true,
            },
            events,
        )
        .unwrap();
        Self::serve(config, backend, receiver).await
    }
}

impl<B: provisioner::backend::Backend + Clone> TestProvisioner<B> {
    /// Serves `config` over `backend`, whose events arrive on `receiver`.
    pub async fn serve(
        config: Config,
        backend: B,
        receiver: mpsc::UnboundedReceiver<provisioner::backend::PodEvent>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let key = config.signing_key().unwrap();
        let task = tokio::spawn(provisioner::serve(
            config,
            key,
            listener,
            backend.clone(),
            receiver,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            address,
            backend,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn pool(&self) -> common::api::PoolStatus {
        self.http
            .get(self.url("/pool"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `GET /pool` satisfies `condition` (polled every 20 ms, bounded by [`WAIT`]).
    pub async fn until_pool(&self, what: &str, condition: impl Fn(&common::api::PoolStatus) -> bool) {
        until_pool(&self.http, &self.url(""), what, condition).await;
    }

    pub async fn create(&self) -> reqwest::Response {
        self.http.post(self.url("/session")).send().await.unwrap()
    }

    pub async fn create_ok(&self) -> common::api::CreateSessionResponse {
        let response = self.create().await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.unwrap()
    }

    /// `method path` with `Authorization: Bearer token`.
    pub async fn authorized(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn status(&self, id: impl std::fmt::Display, token: &str) -> common::api::SessionStatus {
        let response = self
            .authorized(reqwest::Method::GET, &format!("/session/{id}"), token)
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Stops the provisioner as SIGTERM would and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("provisioner did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Waits until the provisioner at `base` answers `GET /pool` with a status satisfying `condition` (polled every
/// 20 ms, bounded by [`WAIT`]); returns it.
pub async fn until_pool(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    condition: impl Fn(&common::api::PoolStatus) -> bool,
) -> common::api::PoolStatus {
    testkit::pool::until(http, base, WAIT, Duration::from_millis(20), what, condition)
        .await
        .unwrap()
}
