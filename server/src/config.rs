//! Command-line flags of the ping server, each with an environment-variable fallback (clap).
//!
//! Defaults are the production limits; tests shrink them through the same flags.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::Parser;

/// Configuration of one ping server process.
#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about = "WebSocket ping server of resume-showcase")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// TCP port to listen on (0 picks a free port).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Pod name reported in `hello` and `pong` (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Node the pod runs on.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Zone of that node.
    #[arg(long, env = "ZONE")]
    pub zone: Option<String>,

    /// Session this pod serves; unset for the shared servers.
    #[arg(long, env = "SESSION_ID")]
    pub session_id: Option<String>,

    /// Largest WebSocket message accepted, in bytes; larger ones close the connection with code 1009.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 1024)]
    pub max_message_bytes: usize,

    /// Messages per second allowed on one connection; the excess is answered with `rate_limited`.
    #[arg(long, env = "MAX_PINGS_PER_SECOND", default_value = "20")]
    pub max_pings_per_second: NonZeroU32,

    /// Open WebSocket connections allowed at once; further upgrades get HTTP 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,

    /// Open WebSocket connections one client (an IPv4 address, or an IPv6 /64) may hold on this server;
    /// further upgrades get HTTP 429 `too_many_client_connections`.
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT", default_value_t = 20)]
    pub max_connections_per_client: usize,

    /// A WebSocket frame that cannot be written within this long (the client does not read) closes the
    /// connection, so a client that only sends cannot pin it.
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// How clients are told apart (trusted proxies, IPv6 grouping).
    #[command(flatten)]
    pub client: common::client::ClientFlags,

    /// A connection that sends nothing for this long gets `goodbye idle` and close code 1000.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// After SIGTERM, keep accepting (with `/ready` at 503) this long so load balancers stop routing here.
    #[arg(long, env = "DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// After the drain delay, how long open connections get to finish before the process exits anyway.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Browser origin allowed to open WebSockets (repeatable, or comma-separated in the environment), e.g.
    /// `https://user.github.io`. Localhost origins are allowed unless `--no-localhost-origins`; requests
    /// without an `Origin` header (non-browser clients) are always allowed.
    #[arg(long = "allowed-origin", env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Do not allow `http://localhost:*` and `http://127.0.0.1:*` origins by default.
    #[arg(long, env = "NO_LOCALHOST_ORIGINS")]
    pub no_localhost_origins: bool,

    /// A connection whose request headers are not complete within this long is closed (slow clients).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Key (at least 32 bytes) that checks the provisioner's signed routes (its `--route-key`): with it, this
    /// server is also an edge and proxies `/ws/session/{id}` to session pods.
    #[arg(long, env = "ROUTE_KEY", hide_env_values = true)]
    pub route_key: Option<common::signing::SecretArg>,

    /// Read the route key from this file (a mounted Secret).
    #[arg(long, env = "ROUTE_KEY_FILE", conflicts_with = "route_key")]
    pub route_key_file: Option<std::path::PathBuf>,

    /// Shut down gracefully when standard input reaches end-of-file. The provisioner's local backend starts
    /// session pods with this, so they can never outlive it, even if it is killed with SIGKILL.
    #[arg(long, env = "EXIT_ON_STDIN_EOF")]
    pub exit_on_stdin_eof: bool,

    /// Once listening, print the port on standard output as one line. The provisioner's local backend starts
    /// session pods with `--port 0` and this, and reads the port back: no free port is picked in advance, so no
    /// two pods (or other programs) can race for one.
    #[arg(long, env = "PRINT_PORT")]
    pub print_port: bool,
}

impl Config {
    /// The pod name: the flag, else the host name, else `ping-server`.
    pub fn resolved_pod_name(&self) -> String {
        self.pod_name
            .clone()
            .filter(|name| !name.is_empty())
            .or_else(|| hostname::get().ok().and_then(|h| h.into_string().ok()))
            .unwrap_or_else(|| "ping-server".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_limits() {
        let config = Config::try_parse_from(["server"]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.max_message_bytes, 1024);
        assert_eq!(config.max_pings_per_second.get(), 20);
        assert_eq!(config.max_connections, 1000);
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
    }

    #[test]
    fn flags_parse_durations_and_reject_nonsense() {
        let config =
            Config::try_parse_from(["server", "--idle-timeout", "250ms", "--pod-name", "p-1"]).unwrap();
        assert_eq!(config.idle_timeout, Duration::from_millis(250));
        assert_eq!(config.resolved_pod_name(), "p-1");
        assert!(Config::try_parse_from(["server", "--idle-timeout", "soon"]).is_err());
        assert!(Config::try_parse_from(["server", "--max-pings-per-second", "0"]).is_err());
        assert!(Config::try_parse_from(["server", "--port", "70000"]).is_err());
    }

    #[test]
    fn pod_name_falls_back_to_host_name() {
        let config = Config::try_parse_from(["server", "--pod-name", ""]).unwrap();
        assert!(!config.resolved_pod_name().is_empty());
    }
}
