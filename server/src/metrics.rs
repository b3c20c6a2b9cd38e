//! Prometheus metrics of the ping server and edge (`GET /metrics`): open WebSockets by kind, pings answered,
//! refusals by code, protocol errors, relay failures, HTTP durations, and the time to answer a ping, sampled.
//!
//! The ping path stays cheap: a connection counts its own pings and adds them to the shared counter once
//! every [`SAMPLE_EVERY`] pings (and when it closes), timing that one ping; every other ping touches no
//! shared memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::api::ApiErrorCode;
use common::protocol::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One ping in this many is timed, and the shared ping counter is updated this often.
pub const SAMPLE_EVERY: u64 = 64;

/// What a WebSocket here is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/ws` on a shared server.
    Shared,
    /// `/ws` on a session's own pod.
    Session,
    /// `/ws/session/{id}` relayed by the edge.
    Relay,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Shared => "shared",
            Kind::Session => "session",
            Kind::Relay => "relay",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a relay failed.
#[derive(Debug, Clone, Copy)]
pub enum RelayError {
    /// The session pod did not accept the upstream WebSocket or its hello was wrong.
    Unreachable,
    /// The session pod went away without a close frame.
    PodGone,
    /// A write to either side missed its deadline or failed.
    Write,
}

impl RelayError {
    fn as_str(self) -> &'static str {
        match self {
            RelayError::Unreachable => "unreachable",
            RelayError::PodGone => "pod_gone",
            RelayError::Write => "write",
        }
    }
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP durations by route and status class.
    pub http: common::metrics::HttpMetrics,
    connections: Family<KindLabel, Gauge>,
    pings: Counter,
    ping_seconds: Histogram,
    refusals: Family<CodeLabel, Counter>,
    protocol_errors: Family<CodeLabel, Counter>,
    relay_errors: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("server");
        common::metrics::register_build_info(&mut registry, env!("CARGO_PKG_VERSION"));
        let http = common::metrics::HttpMetrics::register(&mut registry);
        let connections = Family::<KindLabel, Gauge>::default();
        let pings = Counter::default();
        // 1 µs .. ~16 ms: parsing, answering and writing one pong.
        let ping_seconds = Histogram::new(exponential_buckets(0.000_001, 2.0, 15));
        let refusals = Family::<CodeLabel, Counter>::default();
        let protocol_errors = Family::<CodeLabel, Counter>::default();
        let relay_errors = Family::<ReasonLabel, Counter>::default();
        registry.register("connections", "Open WebSockets, by kind", connections.clone());
        registry.register("pings", "Pings answered", pings.clone());
        registry.register(
            "ping_handling_seconds",
            "Time from a ping read to its pong written, one ping in 64",
            ping_seconds.clone(),
        );
        registry.register(
            "refusals",
            "WebSocket requests refused, by error code",
            refusals.clone(),
        );
        registry.register(
            "protocol_errors",
            "Error messages sent on open WebSockets, by code",
            protocol_errors.clone(),
        );
        registry.register(
            "relay_errors",
            "Edge relays that failed, by reason",
            relay_errors.clone(),
        );
        // Every series that can exist from the start, at 0, so `rate()` and alerts see them before the first
        // event.
        for kind in [Kind::Shared, Kind::Session, Kind::Relay] {
            let _ = connections.get_or_create(&KindLabel { kind: kind.as_str() });
        }
        for &code in ErrorCode::ALL {
            let _ = protocol_errors.get_or_create(&CodeLabel { code: code.as_str() });
        }
        for error in [RelayError::Unreachable, RelayError::PodGone, RelayError::Write] {
            let _ = relay_errors.get_or_create(&ReasonLabel {
                reason: error.as_str(),
            });
        }
        Self {
            registry,
            http,
            connections,
            pings,
            ping_seconds,
            refusals,
            protocol_errors,
            relay_errors,
        }
    }
}

impl Metrics {
    /// Counts one open WebSocket of `kind` until the guard is dropped.
    pub fn open(&self, kind: Kind) -> OpenConnection {
        let gauge = self
            .connections
            .get_or_create(&KindLabel { kind: kind.as_str() })
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }

    /// Counts a refused WebSocket request.
    pub fn refused(&self, code: ApiErrorCode) {
        self.refusals
            .get_or_create(&CodeLabel { code: code.as_str() })
            .inc();
    }

    /// Counts an error message sent on an open WebSocket.
    pub fn protocol_error(&self, code: ErrorCode) {
        self.protocol_errors
            .get_or_create(&CodeLabel { code: code.as_str() })
            .inc();
    }

    /// Counts a failed relay.
    pub fn relay_error(&self, error: RelayError) {
        self.relay_errors
            .get_or_create(&ReasonLabel {
                reason: error.as_str(),
            })
            .inc();
    }

    /// The `/metrics` answer.
    pub fn exposition(&self) -> axum::response::Response {
        common::metrics::exposition(&self.registry)
    }
}

/// An open WebSocket, counted in `server_connections` while it lives.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One connection's ping count, flushed to the shared counter every [`SAMPLE_EVERY`] pings and on drop.
pub struct PingTally<'a> {
    metrics: &'a Metrics,
    unflushed: AtomicU64,
}

impl<'a> PingTally<'a> {
    /// A tally for one connection.
    pub fn new(metrics: &'a Metrics) -> Self {
        Self {
            metrics,
            unflushed: AtomicU64::new(0),
        }
    }

    /// Call when a frame arrives: `Some(start)` when the next pong is the one in [`SAMPLE_EVERY`] to time.
    pub fn start(&self) -> Option<Instant> {
        // An atomic only because the tally is shared by reference across awaits (`Sync`); one task uses it.
        (self.unflushed.load(Ordering::Relaxed) + 1 >= SAMPLE_EVERY).then(Instant::now)
    }

    /// Call when a pong is written, with what [`Self::start`] gave for its ping.
    pub fn answered(&self, started: Option<Instant>) {
        let n = self.unflushed.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(started) = started {
            self.metrics.ping_seconds.observe(started.elapsed().as_secs_f64());
        }
        if n >= SAMPLE_EVERY {
            self.flush();
        }
    }

    fn flush(&self) {
        let n = self.unflushed.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.metrics.pings.inc_by(n);
        }
    }
}

impl Drop for PingTally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics.registry).unwrap();
        out
    }

    #[test]
    fn pings_are_counted_in_batches_and_on_close_and_one_in_64_is_timed() {
        let metrics = Metrics::default();
        {
            let tally = PingTally::new(&metrics);
            let mut timed = 0;
            for _ in 0..130 {
                let started = tally.start();
                timed += usize::from(started.is_some());
                tally.answered(started);
            }
            assert_eq!(timed, 2);
            assert_eq!(metrics.pings.get(), 128, "two batches so far");
        }
        assert_eq!(metrics.pings.get(), 130, "the rest on close");
        assert!(text(&metrics).contains("server_ping_handling_seconds_count 2"));
    }

    #[test]
    fn open_connections_are_counted_by_kind_while_they_live() {
        let metrics = Metrics::default();
        let relay = metrics.open(Kind::Relay);
        let shared = metrics.open(Kind::Shared);
        drop(shared);
        let exposition = text(&metrics);
        assert!(
            exposition.contains("server_connections{kind=\"relay\"} 1"),
            "{exposition}"
        );
        assert!(
            exposition.contains("server_connections{kind=\"shared\"} 0"),
            "{exposition}"
        );
        drop(relay);
        assert!(text(&metrics).contains("server_connections{kind=\"relay\"} 0"));
    }
}
