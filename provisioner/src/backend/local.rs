//! The local backend: each pod is a real child process of the `server` binary on `127.0.0.1`.
//!
//! A child listens on a port of its own choosing (`--port 0 --print-port`) and prints it; the pod is ready when
//! `/ready` on that port answers 200. Killing it kills the process; its exit is detected and reaped by a monitor
//! task. Children never outlive the provisioner: they are started with `--exit-on-stdin-eof` and a
//! pipe on their standard input that only the provisioner holds, so when it dies in any way, even by SIGKILL,
//! the pipe closes and they shut down. On a normal stop, [`Backend::shutdown`] kills and reaps them all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::api::ActivityBody;
use common::ids::{PodName, SessionId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Backend, BackendError, PodEvent, PodPhase, PodRecord};

/// How long `shutdown` waits for children to be reaped.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-request timeout when talking to a child over HTTP.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the local backend.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `server` binary.
    pub server_bin: PathBuf,
    /// Host name in `websocket_url`.
    pub public_host: String,
    /// A child that does not answer `/ready` within this time is killed.
    pub start_timeout: Duration,
    /// Browser origins the pods accept WebSockets from (the provisioner's own list).
    pub allowed_origins: Vec<String>,
    /// Whether localhost origins are allowed too.
    pub localhost_origins: bool,
}

impl LocalConfig {
    /// The `server` binary next to the current executable (how `cargo build` and the release archive lay
    /// them out).
    pub fn sibling_server_bin() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let candidate = exe
            .parent()?
            .join(format!("server{}", std::env::consts::EXE_SUFFIX));
        candidate.is_file().then_some(candidate)
    }
}

#[derive(Debug)]
struct LocalPod {
    /// Known once the child has printed it.
    port: Option<u16>,
    pid: Option<u32>,
    ready: bool,
    session: Option<SessionId>,
    kill: CancellationToken,
    /// When the child was started.
    started: std::time::Instant,
}

struct Inner {
    config: LocalConfig,
    pods: Mutex<HashMap<PodName, LocalPod>>,
    events: mpsc::UnboundedSender<PodEvent>,
    http: reqwest::Client,
    monitors: TaskTracker,
    peak: std::sync::atomic::AtomicUsize,
}

/// Child processes as pods. Clones share the same children.
#[derive(Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

impl LocalBackend {
    /// A backend that reports pod events to `events`.
    pub fn new(config: LocalConfig, events: mpsc::UnboundedSender<PodEvent>) -> anyhow::Result<Self> {
        if !config.server_bin.is_file() {
            anyhow::bail!(
                "the server binary {} does not exist; build it (`cargo build -p server`) or pass --server-bin",
                config.server_bin.display()
            );
        }
        let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                pods: Mutex::default(),
                events,
                http,
                monitors: TaskTracker::new(),
                peak: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    fn pods(&self) -> MutexGuard<'_, HashMap<PodName, LocalPod>> {
        self.inner.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn port(&self, name: &PodName) -> Result<u16, BackendError> {
        self.pods()
            .get(name)
            .and_then(|pod| pod.port)
            .ok_or_else(|| BackendError::NotFound(name.to_string()))
    }

    /// Live children.
    pub fn child_count(&self) -> usize {
        self.pods().len()
    }

    /// Process ids of the live children.
    pub fn child_pids(&self) -> Vec<u32> {
        self.pods().values().filter_map(|pod| pod.pid).collect()
    }

    /// The most children that were alive at once since start (the pool's cap, observed from below).
    pub fn peak_children(&self) -> usize {
        self.inner.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Backend for LocalBackend {
    async fn create(&self, name: &PodName) -> Result<(), BackendError> {
        let child = Command::new(&self.inner.config.server_bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--print-port",
                "--exit-on-stdin-eof",
            ])
            .env("POD_NAME", name.as_str())
            .env("NODE_NAME", "localhost")
            .env("ALLOWED_ORIGINS", self.inner.config.allowed_origins.join(","))
            .env(
                "NO_LOCALHOST_ORIGINS",
                (!self.inner.config.localhost_origins).to_string(),
            )
            .env_remove("SESSION_ID")
            .env_remove("PORT")
            .env_remove("BIND")
            .env_remove("PRINT_PORT")
            .env(
                "RUST_LOG",
                std::env::var("POD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "cannot start {}: {e}",
                    self.inner.config.server_bin.display()
                ))
            })?;
        let kill = CancellationToken::new();
        let alive = {
            let mut pods = self.pods();
            pods.insert(
                name.clone(),
                LocalPod {
                    port: None,
                    pid: child.id(),
                    ready: false,
                    session: None,
                    kill: kill.clone(),
                    started: std::time::Instant::now(),
                },
            );
            pods.len()
        };
        self.inner
            .peak
            .fetch_max(alive, std::sync::atomic::Ordering::SeqCst);
        let backend = self.clone();
        let name = name.clone();
        self.inner
            .monitors
            .spawn(async move { backend.monitor(name, child, kill).await });
        Ok(())
    }

    async fn terminate(&self, name: &PodName) -> Result<(), BackendError> {
        if let Some(pod) = self.pods().get(name) {
            pod.kill.cancel();
        }
        Ok(())
    }

    async fn retire(&self, name: &PodName) -> Result<(), BackendError> {
        match self.pods().get(name) {
            Some(pod) if pod.session.is_some() => Err(BackendError::Conflict(name.to_string())),
            Some(pod) => {
                pod.kill.cancel();
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn list(&self) -> Result<Vec<PodRecord>, BackendError> {
        Ok(self
            .pods()
            .iter()
            .map(|(name, pod)| PodRecord {
                name: name.clone(),
                phase: if pod.ready {
                    PodPhase::Ready
                } else {
                    PodPhase::Starting
                },
                session: pod.session.clone(),
                session_age: None,
                node: Some("localhost".into()),
                outdated: false,
                ended: false,
                age: Some(pod.started.elapsed()),
            })
            .collect())
    }

    async fn claim(&self, name: &PodName, session: &SessionId) -> Result<(), BackendError> {
        match self.pods().get_mut(name) {
            Some(pod) if pod.ready && pod.session.is_none() && !pod.kill.is_cancelled() => {
                pod.session = Some(session.clone());
                Ok(())
            }
            Some(_) => Err(BackendError::Conflict(name.to_string())),
            None => Err(BackendError::NotFound(name.to_string())),
        }
    }

    async fn activity(&self, name: &PodName) -> Result<ActivityBody, BackendError> {
        let port = self.port(name)?;
        super::fetch_activity(&self.inner.http, name, &format!("127.0.0.1:{port}")).await
    }

    fn websocket_url(&self, name: &PodName, _session: &SessionId) -> Option<String> {
        let port = self.port(name).ok()?;
        Some(format!("ws://{}:{port}/ws", self.inner.config.public_host))
    }

    async fn shutdown(&self) {
        for pod in self.pods().values() {
            pod.kill.cancel();
        }
        self.inner.monitors.close();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.inner.monitors.wait())
            .await
            .is_err()
        {
            tracing::warn!(left = self.child_count(), "some children were not reaped in time");
        }
    }
}

impl LocalBackend {
    /// Watches one child from start to exit: readiness, kill requests, and its exit (always reaped).
    async fn monitor(self, name: PodName, mut child: Child, kill: CancellationToken) {
        // Hold the write end of the child's stdin for as long as the child lives: `Child::wait` would close it,
        // and the child takes end-of-file as "the provisioner is gone".
        let _stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (backend, pod_name) = (&self, name.clone());
        let ready = tokio::time::timeout(self.inner.config.start_timeout, async move {
            let port = read_port(stdout).await?;
            if let Some(pod) = backend.pods().get_mut(&pod_name) {
                pod.port = Some(port);
            }
            wait_ready(&backend.inner.http, port).await;
            Some(())
        });
        let ready = async { matches!(ready.await, Ok(Some(()))) };
        tokio::pin!(ready);
        let mut checking = true;
        loop {
            tokio::select! {
                status = child.wait() => {
                    match status {
                        Ok(status) => tracing::debug!(pod = %name, %status, "child exited"),
                        Err(e) => tracing::warn!(pod = %name, error = %e, "cannot wait for child"),
                    }
                    break;
                }
                () = kill.cancelled() => {
                    if let Err(e) = child.kill().await {
                        tracing::warn!(pod = %name, error = %e, "cannot kill child");
                    }
                    break;
                }
                became_ready = &mut ready, if checking => {
                    checking = false;
                    if became_ready {
                        if let Some(pod) = self.pods().get_mut(&name) {
                            pod.ready = true;
                        }
                        let _ = self.inner.events.send(PodEvent::Ready { name: name.clone(), node: Some("localhost".into()) });
                    } else {
                        tracing::warn!(pod = %name, "child never became ready; killing it");
                        kill.cancel();
                    }
                }
            }
        }
        self.pods().remove(&name);
        let _ = self.inner.events.send(PodEvent::Exited { name });
    }
}

/// The port a child printed on its first line of standard output (`--print-port`); `None` if it printed
/// anything else or exited first. The pipe closes after that line: the server writes nothing else to stdout
/// (its logs go to stderr).
async fn read_port(stdout: Option<ChildStdout>) -> Option<u16> {
    let mut line = String::new();
    BufReader::new(stdout?).read_line(&mut line).await.ok()?;
    line.trim().parse().ok()
}

/// Polls `/ready` until it answers 200, like a kubelet readiness probe (the caller bounds the wait).
async fn wait_ready(http: &reqwest::Client, port: u16) {
    let url = format!("http://127.0.0.1:{port}/ready");
    let mut delay = Duration::from_millis(5);
    loop {
        if let Ok(response) = http.get(&url).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}
