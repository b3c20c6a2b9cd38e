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

/// The route key of every test provisioner on Kubernetes (the edge servers' key; distinct from the signing key).
pub const ROUTE_KEY: &str = "test-route-key-test-route-key-test-route-key-0123";

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
        let config = config(flags);
        let (events, receiver) = mpsc::unbounded_channel();
        Self::serve(config, local_backend(events), receiver).await
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

    /// `POST /session` from the local address `source` (a client of its own; see `testkit::ws::loopback_client`).
    pub async fn create_from(&self, source: std::net::IpAddr) -> reqwest::Response {
        from(source).post(self.url("/session")).send().await.unwrap()
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

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the session is in `state` (polled like the page polls, bounded by [`WAIT`]).
    pub async fn until_state(
        &self,
        id: impl std::fmt::Display,
        token: &str,
        state: common::api::SessionState,
    ) {
        let id = id.to_string();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = self.status(&id, token).await;
            if status.state == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session never {state:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/metrics` has `sample` at least `at_least` (polled, bounded by [`WAIT`]).
    pub async fn until_metric(&self, sample: &str, at_least: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.metrics().await;
            if metric(&text, sample) >= at_least {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sample} never reached {at_least}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn status(&self, id: impl std::fmt::Display, token: &str) -> common::api::SessionStatus {
        let response = self
            .authorized(reqwest::Method::GET, &format!("/session/{id}"), token)
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Begins stopping the provisioner as SIGTERM would, without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the provisioner as SIGTERM would and waits for it.
    pub async fn stop(mut self) {
        self.begin_stop();
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("provisioner did not stop")
            .unwrap()
            .unwrap();
    }
}

/// An HTTP client whose connections come from the local address `source`.
pub fn from(source: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source)
        .build()
        .expect("an HTTP client")
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

/// Which backend step a [`Gated`] backend holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Before the first pod is created (a cold start halfway).
    Create,
    /// After the first claim landed in the backend, before the pool hears of it (a claim halfway).
    Claim,
}

/// The seam of the hang-up tests: the first `step` of the wrapped backend stops and waits until the test
/// releases it, so a request can be cut exactly there, not by a lucky race.
pub struct Gate {
    step: Step,
    armed: std::sync::atomic::AtomicBool,
    entered: tokio::sync::Notify,
    released: tokio::sync::Semaphore,
}

impl Gate {
    pub fn new(step: Step) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            step,
            armed: std::sync::atomic::AtomicBool::new(true),
            entered: tokio::sync::Notify::new(),
            released: tokio::sync::Semaphore::new(0),
        })
    }

    /// Waits until the backend reached the step (bounded).
    pub async fn reached(&self) {
        testkit::wait::within(WAIT, "the gated step", self.entered.notified())
            .await
            .unwrap();
    }

    /// Lets the held step go on.
    pub fn release(&self) {
        self.released.add_permits(1);
    }

    async fn pass(&self, step: Step) {
        if step == self.step && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            if let Ok(permit) = self.released.acquire().await {
                permit.forget();
            }
        }
    }
}

/// A backend whose first create or claim is held by a [`Gate`].
#[derive(Clone)]
pub struct Gated<B> {
    pub inner: B,
    pub gate: std::sync::Arc<Gate>,
}

impl<B: provisioner::backend::Backend + Clone> provisioner::backend::Backend for Gated<B> {
    async fn create(&self, name: &common::ids::PodName) -> Result<(), provisioner::backend::BackendError> {
        self.gate.pass(Step::Create).await;
        self.inner.create(name).await
    }

    async fn terminate(&self, name: &common::ids::PodName) -> Result<(), provisioner::backend::BackendError> {
        self.inner.terminate(name).await
    }

    async fn end(&self, name: &common::ids::PodName) -> Result<(), provisioner::backend::BackendError> {
        self.inner.end(name).await
    }

    async fn retire(&self, name: &common::ids::PodName) -> Result<(), provisioner::backend::BackendError> {
        self.inner.retire(name).await
    }

    async fn list(&self) -> Result<Vec<provisioner::backend::PodRecord>, provisioner::backend::BackendError> {
        self.inner.list().await
    }

    async fn claim(
        &self,
        name: &common::ids::PodName,
        session: &common::ids::SessionId,
    ) -> Result<(), provisioner::backend::BackendError> {
        let claimed = self.inner.claim(name, session).await;
        self.gate.pass(Step::Claim).await;
        claimed
    }

    async fn activity(
        &self,
        name: &common::ids::PodName,
    ) -> Result<common::api::ActivityBody, provisioner::backend::BackendError> {
        self.inner.activity(name).await
    }

    fn websocket_url(&self, name: &common::ids::PodName, session: &common::ids::SessionId) -> Option<String> {
        self.inner.websocket_url(name, session)
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

impl TestProvisioner<Gated<LocalBackend>> {
    /// Starts one over the local backend whose first `step` is held by the returned gate.
    pub async fn start_gated(flags: &[&str], step: Step) -> (Self, std::sync::Arc<Gate>) {
        let config = config(flags);
        let (events, receiver) = mpsc::unbounded_channel();
        let inner = local_backend(events);
        let gate = Gate::new(step);
        let backend = Gated {
            inner,
            gate: gate.clone(),
        };
        (Self::serve(config, backend, receiver).await, gate)
    }
}

/// The local backend over the test build of the `server` binary.
pub fn local_backend(events: mpsc::UnboundedSender<provisioner::backend::PodEvent>) -> LocalBackend {
    LocalBackend::new(
        LocalConfig {
            server_bin: server_bin(),
            public_host: "127.0.0.1".into(),
            start_timeout: Duration::from_secs(15),
            allowed_origins: Vec::new(),
            localhost_origins: true,
        },
        events,
    )
    .unwrap()
}

/// The value of the Prometheus sample `name` (with its labels, e.g. `x_total{reason="idle"}`) in `/metrics`,
/// or 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}
