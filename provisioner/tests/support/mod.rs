//! Test harness: the real provisioner with the real local backend (child processes of the real `server`
//! binary), driven by real HTTP and WebSocket clients.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use common::protocol::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use provisioner::Config;
use provisioner::backend::local::{LocalBackend, LocalConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// The signing key every test provisioner uses, so tests can make valid tokens for any session id.
pub const SIGNING_KEY: &str = "test-signing-key-test-signing-key-0123456789";

/// The token of session `id` under [`SIGNING_KEY`].
pub fn token_for(id: impl AsRef<str>) -> String {
    common::signing::SigningKey::new(SIGNING_KEY.as_bytes())
        .unwrap()
        .session_token(id.as_ref())
}

/// Bound on every wait; reached only when something is broken.
pub const WAIT: Duration = Duration::from_secs(20);

/// The `server` binary, built once per test run so it is never stale.
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "server", "--bin", "server"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cannot build the server binary");
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>/server
        let bin = exe.parent().unwrap().parent().unwrap().join("server");
        assert!(bin.is_file(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// Spawns `command` (a service binary) with JSON logs on stderr, waits until it logs `message` (its
/// "listening" line), and returns it with the address that line names. Later logs are drained so the child
/// never blocks on a full pipe.
pub async fn spawn_listening(
    mut command: tokio::process::Command,
    message: &str,
) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if log["message"] == message {
                return log["address"].as_str().unwrap().to_owned();
            }
            if log["level"] == "ERROR" {
                eprintln!("{line}");
            }
        }
        panic!("the process exited before logging {message:?}");
    })
    .await
    .expect("the process did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
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

/// A WebSocket to a pod, with its hello already read.
pub struct PodClient {
    pub ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    pub hello: ServerMessage,
}

impl PodClient {
    pub async fn connect(url: &str) -> Self {
        let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect to pod");
        let hello = next_message(&mut ws).await.expect("hello");
        Self { ws, hello }
    }

    pub fn pod_name(&self) -> common::ids::PodName {
        match &self.hello {
            ServerMessage::Hello { pod, .. } => pod.name.as_str().into(),
            other => panic!("not a hello: {other:?}"),
        }
    }

    /// Sends a ping and returns the answering pod's name.
    pub async fn ping(&mut self, seq: u64) -> common::ids::PodName {
        let ping = ClientMessage::Ping { seq, sent_at: 1.0 }.to_json();
        self.ws.send(Message::text(ping)).await.unwrap();
        match next_message(&mut self.ws).await {
            Some(ServerMessage::Pong { seq: s, pod, .. }) if s == seq => pod.into(),
            other => panic!("expected pong {seq}, got {other:?}"),
        }
    }

    /// Waits until the server side goes away (close frame, reset or end of stream).
    pub async fn until_closed(&mut self) {
        tokio::time::timeout(WAIT, async {
            while let Some(Ok(frame)) = self.ws.next().await {
                if let Message::Close(_) = frame {
                    break;
                }
            }
        })
        .await
        .expect("pod connection stayed open");
    }
}

async fn next_message(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message in time")?
        {
            Ok(Message::Text(text)) => return Some(ServerMessage::parse(&text).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// PIDs of the live (non-zombie) children of `parent`, read from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") {
            children.push(pid);
        }
    }
    children
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
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
