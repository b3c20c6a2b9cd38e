//! Command-line flags of the provisioner, each with an environment-variable fallback (clap), and the
//! per-part configurations derived from them.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use common::client::ClientFlags;
use common::signing::{SecretArg, SigningKey};

use crate::backend::kubernetes::manifest::SessionPodTemplate;
use crate::pool::PoolConfig;

/// Which backend runs the session pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Child processes of the `server` binary on this machine (no cluster needed).
    Local,
    /// One-pod Jobs in a Kubernetes namespace (in-cluster service account, or `KUBECONFIG`).
    Kubernetes,
}

/// Configuration of the provisioner process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "provisioner",
    version,
    about = "Session provisioner of resume-showcase",
    // A flag given twice takes its last value (scripts and tests add to a base set of flags).
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// TCP port to listen on (0 picks a free port).
    #[arg(long, env = "PORT", default_value_t = 8081)]
    pub port: u16,

    /// Where session pods run.
    #[arg(long, env = "BACKEND", value_enum, default_value = "local")]
    pub backend: BackendKind,

    /// Ready, unassigned pods the pool keeps waiting for new sessions.
    #[arg(long, env = "WARM_POOL_SIZE", default_value_t = 2)]
    pub warm_pool_size: u32,

    /// Most sessions at once. Pods never exceed `warm-pool-size + max-sessions`.
    #[arg(long, env = "MAX_SESSIONS", default_value_t = 20)]
    pub max_sessions: u32,

    /// Most pods starting at once (bounds the load a burst puts on the backend).
    #[arg(long, env = "MAX_STARTING", default_value_t = 4)]
    pub max_starting: u32,

    /// How long `POST /session` waits for a pod when the pool is empty before answering 504.
    #[arg(long, env = "COLD_START_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub cold_start_timeout: Duration,

    /// A session whose pod saw no WebSocket activity for this long is ended.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub session_idle_timeout: Duration,

    /// A session older than this is ended.
    #[arg(long, env = "SESSION_MAX_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub session_max_age: Duration,

    /// Minimum time between two kills of the same session.
    #[arg(long, env = "KILL_COOLDOWN", default_value = "5s", value_parser = humantime::parse_duration)]
    pub kill_cooldown: Duration,

    /// Period of the full resync with the backend (events drive everything else).
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub resync_interval: Duration,

    /// Live sessions one client (an IPv4 address, or an IPv6 /64) may hold at once; the next `POST /session` is
    /// refused with 429 `too_many_sessions`. Raise it where many visitors share one address (an office, a
    /// mobile carrier's NAT).
    #[arg(long, env = "MAX_SESSIONS_PER_CLIENT", default_value_t = 3)]
    pub max_sessions_per_client: u32,

    /// Sessions one client may create per minute (sustained rate).
    #[arg(long, env = "SESSIONS_PER_MINUTE", default_value = "20")]
    pub sessions_per_minute: NonZeroU32,

    /// Sessions one client may create in a burst.
    #[arg(long, env = "SESSION_BURST", default_value = "10")]
    pub session_burst: NonZeroU32,

    /// Requests per second one client may make to the API's session endpoints (a page polling at 5 Hz makes
    /// 5); beyond it, 429 `rate_limited` with `Retry-After`. Also the burst.
    #[arg(long, env = "REQUESTS_PER_SECOND", default_value = "20")]
    pub requests_per_second: NonZeroU32,

    /// A session whose pod sees no WebSocket within this long after it was assigned ends, and frees the pod.
    #[arg(long, env = "FIRST_CONNECT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub first_connect_timeout: Duration,

    /// A session whose pod has had no open WebSocket for this long ends (a closed tab, a crashed browser).
    #[arg(long, env = "RECONNECT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reconnect_timeout: Duration,

    /// Open `GET /pool/events` streams one client may hold; further ones get 429.
    #[arg(long, env = "MAX_STREAMS_PER_CLIENT", default_value_t = 4)]
    pub max_streams_per_client: usize,

    /// WebSocket URL of a shared, load-balanced ping server (repeatable, or comma-separated in the
    /// environment), e.g. `wss://demo.example.com/ws`; `GET /info` tells the page, which pings it beside the
    /// session's own pod.
    #[arg(long = "shared-url", env = "SHARED_URLS", value_delimiter = ',')]
    pub shared_urls: Vec<String>,

    /// How clients are told apart (trusted proxies, IPv6 grouping).
    #[command(flatten)]
    pub client: ClientFlags,

    /// Origin allowed to call the API from a browser (repeatable, or comma-separated in the environment),
    /// e.g. `https://user.github.io`. Localhost origins are allowed unless `--no-localhost-origins`.
    #[arg(long = "allowed-origin", env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Do not allow `http://localhost:*` and `http://127.0.0.1:*` origins by default.
    #[arg(long, env = "NO_LOCALHOST_ORIGINS")]
    pub no_localhost_origins: bool,

    /// A connection that has not sent a complete request head within this long (a silent one, a slow one,
    /// half an HTTP/2 preface) is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// A request body that has not fully arrived within this long is answered 408 and its connection closed.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// After SIGTERM, keep serving (with `/ready` at 503) this long so load balancers stop routing here; pending
    /// cold starts are answered.
    #[arg(long, env = "DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After the drain delay, the most requests still in flight get before the process stops anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// `Host` (`name` or `name:port`) the API answers to (repeatable, or comma-separated in the environment);
    /// other hosts get 403 `host_not_allowed`, so a DNS-rebinding page cannot reach a local provisioner. Default:
    /// any host, except that a provisioner bound to a loopback address answers only to loopback names.
    #[arg(long = "allowed-host", env = "ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,

    /// Serve the built web page (Trunk's `dist/`) from this directory on the same port as the API.
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Local backend: the `server` binary (default: next to this executable).
    #[arg(long, env = "SERVER_BIN")]
    pub server_bin: Option<PathBuf>,

    /// Local backend: host name put in `websocket_url` (the browser must reach the pods at this host).
    #[arg(long, env = "PUBLIC_HOST", default_value = "127.0.0.1")]
    pub public_host: String,

    /// Key that derives the session tokens, at least 32 bytes. Every provisioner replica must share it, and only
    /// they hold it (the edge servers never do). Without one, a random key is made and tokens die with the
    /// process.
    #[arg(long, env = "SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<SecretArg>,

    /// Read the signing key from this file (a mounted Kubernetes Secret); trailing whitespace is ignored.
    #[arg(long, env = "SIGNING_KEY_FILE", conflicts_with = "signing_key")]
    pub signing_key_file: Option<PathBuf>,

    /// How long a new pod may take to become ready before it is deleted.
    #[arg(long, env = "POD_START_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub pod_start_timeout: Duration,

    /// Settings of the Kubernetes backend.
    #[command(flatten, next_help_heading = "Kubernetes backend")]
    pub kubernetes: KubernetesFlags,

    /// The key made when none is configured: made once, on first use, and shared by clones of this
    /// configuration, so every part of the process signs with the same one.
    #[arg(skip)]
    random_key: std::sync::Arc<std::sync::OnceLock<SigningKey>>,
}

/// Flags of the Kubernetes backend.
#[derive(Debug, Clone, clap::Args)]
pub struct KubernetesFlags {
    /// Namespace of the session Jobs (default: the service account's, or the kubeconfig context's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Public base URL of the edge servers that route browsers to session pods, e.g. `wss://demo.example.com`.
    #[arg(long, env = "EDGE_URL", required_if_eq("backend", "kubernetes"))]
    pub edge_url: Option<String>,

    /// How long a signed route to a session pod stays valid for connecting; a reconnect asks `GET
    /// /session/{id}` for a fresh one.
    #[arg(long, env = "ROUTE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub route_ttl: Duration,

    /// Key that signs routes to session pods, at least 32 bytes, shared with the edge servers (a different key
    /// from `--signing-key`: an edge can check routes but never make session tokens).
    #[arg(
        long,
        env = "ROUTE_KEY",
        hide_env_values = true,
        conflicts_with = "route_key_file"
    )]
    pub route_key: Option<SecretArg>,

    /// Read the route key from this file (a mounted Secret).
    #[arg(long, env = "ROUTE_KEY_FILE")]
    pub route_key_file: Option<PathBuf>,

    /// Image of the session pods (the ping server).
    #[arg(
        long,
        env = "SESSION_IMAGE",
        default_value = "ghcr.io/resume-showcase/resume-showcase/server:latest"
    )]
    pub session_image: String,

    /// Pull policy of the session image (`Always`, `IfNotPresent` or `Never`); default: the cluster's.
    #[arg(long, env = "SESSION_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub session_image_pull_policy: Option<String>,

    /// Secret for pulling the session image from a private registry (repeatable, or comma-separated in the
    /// environment).
    #[arg(
        long = "session-image-pull-secret",
        env = "SESSION_IMAGE_PULL_SECRETS",
        value_delimiter = ','
    )]
    pub session_image_pull_secrets: Vec<String>,

    /// Port the ping server listens on inside session pods.
    #[arg(long, env = "SESSION_PORT", default_value_t = 8080)]
    pub session_port: u16,

    /// CPU request of a session pod.
    #[arg(long, env = "SESSION_CPU_REQUEST", default_value = "10m")]
    pub session_cpu_request: String,

    /// Memory request of a session pod.
    #[arg(long, env = "SESSION_MEMORY_REQUEST", default_value = "30Mi")]
    pub session_memory_request: String,

    /// CPU limit of a session pod.
    #[arg(long, env = "SESSION_CPU_LIMIT", default_value = "100m")]
    pub session_cpu_limit: String,

    /// Memory limit of a session pod.
    #[arg(long, env = "SESSION_MEMORY_LIMIT", default_value = "256Mi")]
    pub session_memory_limit: String,

    /// A warm pod nobody claimed is recycled at this age (Job `activeDeadlineSeconds`; a claim extends it to
    /// the session's maximum age).
    #[arg(long, env = "WARM_POD_MAX_AGE", default_value = "6h", value_parser = humantime::parse_duration)]
    pub warm_pod_max_age: Duration,

    /// Finished session Jobs are deleted after this long (`ttlSecondsAfterFinished`).
    #[arg(long, env = "SESSION_TTL_AFTER_FINISHED", default_value = "1m", value_parser = humantime::parse_duration)]
    pub session_ttl_after_finished: Duration,

    /// Name of a ConfigMap that owns every session Job (the Helm chart creates one): deleting it, as
    /// `helm uninstall` does, deletes the Jobs.
    #[arg(long, env = "SESSION_OWNER")]
    pub session_owner: Option<String>,

    /// Extra label on session Jobs and pods, `key=value` (repeatable; comma-separated in the environment),
    /// e.g. `app.kubernetes.io/instance=demo`.
    #[arg(long = "session-label", env = "SESSION_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub session_labels: Vec<(String, String)>,

    /// Scheduling and extra metadata of session pods, as JSON with Kubernetes field names: `nodeSelector`,
    /// `affinity`, `tolerations`, `topologySpreadConstraints`, `priorityClassName`, `annotations`, `labels`
    /// (the chart renders it from its `session.*` values).
    #[arg(long, env = "SESSION_POD_TEMPLATE", default_value = "", value_parser = SessionPodTemplate::parse)]
    pub session_pod_template: SessionPodTemplate,
}

fn parse_label(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
        _ => Err(format!("expected key=value, got {value:?}")),
    }
}

impl Config {
    /// The signing key from `--signing-key` or `--signing-key-file`; when neither is given, a random one, the
    /// same on every call (tokens then die with the process).
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        let key = SigningKey::from_args(self.signing_key.as_ref(), self.signing_key_file.as_deref())
            .context("--signing-key / --signing-key-file")?;
        Ok(key.unwrap_or_else(|| self.random_key.get_or_init(crate::ids::random_key).clone()))
    }

    /// The key that signs routes (`--route-key` or `--route-key-file`), which the Kubernetes backend needs.
    pub fn route_key(&self) -> anyhow::Result<SigningKey> {
        let k = &self.kubernetes;
        SigningKey::from_args(k.route_key.as_ref(), k.route_key_file.as_deref())
            .context("--route-key / --route-key-file")?
            .context("--route-key or --route-key-file is required with --backend kubernetes (the edge servers' key)")
    }

    /// The pool algorithm's part of the configuration.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            warm_target: self.warm_pool_size,
            max_sessions: self.max_sessions,
            max_starting: self.max_starting.max(1),
            cold_start_timeout: self.cold_start_timeout,
            max_sessions_per_client: self.max_sessions_per_client.max(1),
            first_connect_timeout: self.first_connect_timeout,
            reconnect_timeout: self.reconnect_timeout,
            pod_start_timeout: self.pod_start_timeout,
            idle_timeout: self.session_idle_timeout,
            max_age: self.session_max_age,
            kill_cooldown: self.kill_cooldown,
            resync_interval: self.resync_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let config = Config::try_parse_from(["provisioner"]).unwrap();
        assert_eq!(config.port, 8081);
        assert_eq!(config.backend, BackendKind::Local);
        let pool = config.pool();
        assert_eq!((pool.warm_target, pool.max_sessions), (2, 20));
        assert_eq!(pool.kill_cooldown, Duration::from_secs(5));
        assert_eq!(pool.idle_timeout, Duration::from_secs(600));
        assert_eq!(pool.max_age, Duration::from_secs(3600));
    }

    #[test]
    fn origins_are_repeatable_and_bad_values_rejected() {
        let config = Config::try_parse_from([
            "provisioner",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "https://b.example",
        ])
        .unwrap();
        assert_eq!(config.allowed_origins, ["https://a.example", "https://b.example"]);
        assert!(Config::try_parse_from(["provisioner", "--warm-pool-size", "-1"]).is_err());
        assert!(Config::try_parse_from(["provisioner", "--backend", "docker"]).is_err());
        assert!(Config::try_parse_from(["provisioner", "--kill-cooldown", "later"]).is_err());
    }

    #[test]
    fn kubernetes_needs_an_edge_url_and_takes_pod_settings() {
        assert!(Config::try_parse_from(["provisioner", "--backend", "kubernetes"]).is_err());
        let config = Config::try_parse_from([
            "provisioner",
            "--backend",
            "kubernetes",
            "--edge-url",
            "wss://demo.example",
            "--session-label",
            "app.kubernetes.io/instance=demo",
            "--session-memory-limit",
            "128Mi",
        ])
        .unwrap();
        let k = &config.kubernetes;
        assert_eq!(config.backend, BackendKind::Kubernetes);
        assert_eq!(
            k.session_labels,
            [("app.kubernetes.io/instance".into(), "demo".into())]
        );
        assert_eq!(
            (k.session_cpu_request.as_str(), k.session_memory_limit.as_str()),
            ("10m", "128Mi")
        );
        assert!(Config::try_parse_from(["provisioner", "--session-label", "novalue"]).is_err());
    }

    #[test]
    fn without_a_configured_key_every_call_gives_the_same_random_key() {
        let config = Config::try_parse_from(["provisioner"]).unwrap();
        let key = config.signing_key().unwrap();
        let token = key.session_token("s");
        assert!(config.signing_key().unwrap().verify_session_token("s", &token));
        assert!(
            config
                .clone()
                .signing_key()
                .unwrap()
                .verify_session_token("s", &token)
        );
        let other = Config::try_parse_from(["provisioner"]).unwrap();
        assert!(
            !other.signing_key().unwrap().verify_session_token("s", &token),
            "another process gets another key"
        );
    }

    #[test]
    fn signing_keys_are_checked_and_never_printed() {
        let secret = "k".repeat(40);
        let config = Config::try_parse_from(["provisioner", "--signing-key", &secret]).unwrap();
        assert!(!format!("{config:?}").contains(&secret));
        let key = config.signing_key().unwrap();
        assert!(key.verify_session_token("s", &key.session_token("s")));
        let weak = Config::try_parse_from(["provisioner", "--signing-key", "short"]).unwrap();
        assert!(weak.signing_key().is_err());
        let missing =
            Config::try_parse_from(["provisioner", "--signing-key-file", "/nonexistent/key"]).unwrap();
        assert!(missing.signing_key().is_err());
        assert!(
            Config::try_parse_from([
                "provisioner",
                "--signing-key",
                &secret,
                "--signing-key-file",
                "/k"
            ])
            .is_err()
        );
    }
}
