//! Prometheus metrics of the provisioner (`GET /metrics`), kept apart from the logic that updates them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pool::state::{Counts, Recovery};

/// Label set with one `source` (warm/cold).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `warm` or `cold`.
    pub source: &'static str,
}

/// Label set with one `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why something was rejected or ended.
    pub reason: &'static str,
}

/// Label set with one pod `state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `warm`, `starting`, `assigned` or `terminating`.
    pub state: &'static str,
}

/// Label set with one `cause`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    /// `kill` (through the API) or `lost` (the pod went away by itself).
    pub cause: &'static str,
}

/// Every metric the provisioner exports.
pub struct Metrics {
    registry: Registry,
    /// Sessions created, by where their pod came from.
    pub sessions_created: Family<SourceLabel, Counter>,
    /// Sessions ended, by reason (deleted, idle, max_age, shutdown).
    pub sessions_ended: Family<ReasonLabel, Counter>,
    /// Time from `POST /session` to an assigned pod, in seconds.
    pub assignment_seconds: Histogram,
    /// Pods by state.
    pub pods: Family<StateLabel, Gauge>,
    /// Live sessions.
    pub sessions_active: Gauge,
    /// Pods killed through the API.
    pub kills: Counter,
    /// Replacement pods handed to sessions, by cause (kill, lost).
    pub replacements: Family<CauseLabel, Counter>,
    /// Kills healed, by where the replacement came from (warm: it was warm when the kill was accepted).
    pub recoveries: Family<SourceLabel, Counter>,
    /// From a kill accepted to its replacement assigned, by source, in seconds.
    pub recovery_seconds: Family<SourceLabel, Histogram>,
    /// Request ids, answer logs' twin: HTTP durations by route and status class.
    pub http: common::metrics::HttpMetrics,
    /// Requests refused, by reason.
    pub rejections: Family<ReasonLabel, Counter>,
    /// Pods the backend failed to create.
    pub create_failures: Counter,
    /// Session requests whose client hung up before they were answered.
    pub hangups: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("provisioner");
        let sessions_created = Family::<SourceLabel, Counter>::default();
        let sessions_ended = Family::<ReasonLabel, Counter>::default();
        // 0.5 ms .. ~16 s.
        let assignment_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let pods = Family::<StateLabel, Gauge>::default();
        let sessions_active = Gauge::default();
        let kills = Counter::default();
        let replacements = Family::<CauseLabel, Counter>::default();
        let recoveries = Family::<SourceLabel, Counter>::default();
        // 100 µs .. ~13 s: a warm recovery is under a millisecond locally and a few hundred on a node, a cold
        // one is a pod start.
        let recovery_seconds = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        common::metrics::register_build_info(&mut registry, env!("CARGO_PKG_VERSION"));
        let http = common::metrics::HttpMetrics::register(&mut registry);
        let rejections = Family::<ReasonLabel, Counter>::default();
        let create_failures = Counter::default();
        let hangups = Counter::default();
        registry.register(
            "sessions_created",
            "Sessions created, by pod source",
            sessions_created.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions ended, by reason",
            sessions_ended.clone(),
        );
        registry.register(
            "assignment_seconds",
            "Time from session request to assigned pod",
            assignment_seconds.clone(),
        );
        registry.register("pods", "Pods by state", pods.clone());
        registry.register("sessions_active", "Live sessions", sessions_active.clone());
        registry.register("kills", "Pods killed through the API", kills.clone());
        registry.register(
            "replacements",
            "Replacement pods handed to sessions, by cause",
            replacements.clone(),
        );
        registry.register(
            "recoveries",
            "Kills healed with a replacement pod, by the replacement's source",
            recoveries.clone(),
        );
        registry.register(
            "recovery_seconds",
            "Time from a kill accepted to its replacement assigned, by the replacement's source",
            recovery_seconds.clone(),
        );
        registry.register("rejections", "Requests refused, by reason", rejections.clone());
        registry.register(
            "pod_create_failures",
            "Pods the backend failed to create",
            create_failures.clone(),
        );
        registry.register(
            "client_hangups",
            "Session requests whose client hung up before they were answered",
            hangups.clone(),
        );
        Self {
            registry,
            sessions_created,
            sessions_ended,
            assignment_seconds,
            pods,
            sessions_active,
            kills,
            replacements,
            recoveries,
            recovery_seconds,
            http,
            rejections,
            create_failures,
            hangups,
        }
    }
}

impl Metrics {
    /// Counts a refused request, by its error code.
    pub fn reject(&self, code: common::api::ApiErrorCode) {
        self.rejections
            .get_or_create(&ReasonLabel {
                reason: code.as_str(),
            })
            .inc();
    }

    /// Counts a replacement handed to a session, and the kill it healed, if any.
    pub fn replaced(&self, recovery: Option<Recovery>) {
        let cause = if recovery.is_some() { "kill" } else { "lost" };
        self.replacements.get_or_create(&CauseLabel { cause }).inc();
        if let Some(recovery) = recovery {
            let source = SourceLabel {
                source: recovery.source.as_str(),
            };
            self.recoveries.get_or_create(&source).inc();
            self.recovery_seconds
                .get_or_create(&source)
                .observe(recovery.after.as_secs_f64());
        }
    }

    /// Publishes the pool's pod counts and session count.
    pub fn set_pool(&self, counts: Counts, sessions: usize) {
        for (state, value) in [
            ("warm", counts.warm),
            ("starting", counts.starting),
            ("assigned", counts.assigned),
            ("terminating", counts.terminating),
        ] {
            self.pods
                .get_or_create(&StateLabel { state })
                .set(i64::from(value));
        }
        self.sessions_active
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
    }

    /// The `/metrics` answer: every metric, as OpenMetrics text.
    pub fn exposition(&self) -> axum::response::Response {
        common::metrics::exposition(&self.registry)
    }

    /// The exposition's text (tests).
    #[cfg(test)]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encode");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::default();
        metrics.reject(common::api::ApiErrorCode::AtCapacity);
        metrics
            .sessions_created
            .get_or_create(&SourceLabel { source: "warm" })
            .inc();
        metrics.set_pool(
            Counts {
                warm: 2,
                ..Counts::default()
            },
            1,
        );
        let text = metrics.encode();
        for needle in [
            "provisioner_sessions_created_total{source=\"warm\"} 1",
            "provisioner_rejections_total{reason=\"at_capacity\"} 1",
            "provisioner_pods{state=\"warm\"} 2",
            "provisioner_sessions_active 1",
            "provisioner_assignment_seconds_bucket",
            "provisioner_kills_total",
            "provisioner_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
