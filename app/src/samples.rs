//! Measurements and what happened around them: the ping bookkeeping ([`Pinger`]) and the bounded history of
//! samples and events ([`History`]) that the chart, the statistics and the CSV export read.
//!
//! Times are milliseconds on the page's clock (`performance.now()`), passed in by the caller so everything here
//! is plain, natively tested Rust.

use std::collections::VecDeque;

use common::protocol::ClientMessage;

/// At 10 Hz for an hour (the largest window at the fastest rate).
pub const MAX_SAMPLES: usize = 36_000;
/// Events kept (kills, reconnects...); far more than an hour of clicking.
pub const MAX_EVENTS: usize = 1_000;

/// How far each interval between two pings strays from the rate's, either way: ±25 %.
pub const JITTER: f64 = 0.25;

/// When the ping after one due at `due` is due, at `rate_hz`, the tick having run at `at`; `draw` is a random
/// number in `[0, 1)`. Each interval is drawn uniformly within ±[`JITTER`] of `1 / rate_hz` (so the rate holds
/// on average), the way RFC 2330 (§11.1) advises against strictly periodic sampling: at a fixed period a
/// series keeps one phase against everything else periodic in the browser (60 Hz frames, the page's timers,
/// the other series' pings) for a whole run, and every one of its samples shares that phase's luck, good or
/// bad. Never earlier than `at`, so a late tick does not fire a burst.
pub fn next_due(due: f64, at: f64, rate_hz: f64, draw: f64) -> f64 {
    let interval = 1000.0 / rate_hz.clamp(0.5, 10.0);
    let factor = 1.0 - JITTER + 2.0 * JITTER * draw.clamp(0.0, 1.0);
    (due + interval * factor).max(at)
}

/// One ping's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sequence number of the ping.
    pub seq: u64,
    /// When it was sent (page clock, ms).
    pub sent_at: f64,
    /// Round-trip time in ms, `None` if it was lost (no pong within the timeout, or the socket died).
    pub rtt: Option<f64>,
    /// The pod that answered (or was asked).
    pub pod: String,
}

/// Something worth a vertical line on the chart.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Connected to a pod.
    Connected {
        /// The pod.
        pod: String,
    },
    /// The first pong after an outage (a kill or a dropped socket) arrived.
    Recovered {
        /// Time since the kill or the drop.
        recovery_ms: f64,
    },
    /// The user killed their pod.
    Killed {
        /// The pod.
        pod: String,
    },
    /// The connection dropped.
    Disconnected,
    /// The tab was hidden: the browser may delay pings from here on.
    Hidden,
    /// The tab is visible again.
    Visible,
}

impl EventKind {
    /// The label drawn on the chart.
    pub fn label(&self) -> String {
        match self {
            EventKind::Recovered { recovery_ms } => format!("recovered in {recovery_ms:.0} ms"),
            EventKind::Connected { pod } => format!("connected to {}", common::names::display_name(pod)),
            EventKind::Killed { .. } => "pod killed".to_owned(),
            EventKind::Disconnected => "disconnected".to_owned(),
            EventKind::Hidden => "tab hidden".to_owned(),
            EventKind::Visible => "tab visible".to_owned(),
        }
    }
}

/// An event at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Page clock, ms.
    pub at: f64,
    /// What happened.
    pub kind: EventKind,
}

/// Samples and events, oldest first, bounded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    samples: VecDeque<Sample>,
    events: VecDeque<Event>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond [`MAX_SAMPLES`]. Samples arrive roughly in `sent_at` order;
    /// a lost ping is reported late, so it is inserted at its place.
    pub fn push(&mut self, sample: Sample) {
        let position = self
            .samples
            .iter()
            .rposition(|s| s.sent_at <= sample.sent_at)
            .map_or(0, |i| i + 1);
        self.samples.insert(position, sample);
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Records an event.
    pub fn mark(&mut self, at: f64, kind: EventKind) {
        self.events.push_back(Event { at, kind });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// Every sample, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = &Sample> + ExactSizeIterator {
        self.samples.iter()
    }

    /// Samples sent at or after `from`.
    pub fn since(&self, from: f64) -> impl DoubleEndedIterator<Item = &Sample> {
        let start = self.samples.partition_point(|s| s.sent_at < from);
        self.samples.range(start..)
    }

    /// Events at or after `from`.
    pub fn events_since(&self, from: f64) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.at >= from)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples as CSV: `seq,sent_at_ms,rtt_ms,lost,pod`.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("seq,sent_at_ms,rtt_ms,lost,pod\n");
        for s in &self.samples {
            let rtt = s.rtt.map(|r| format!("{r:.3}")).unwrap_or_default();
            csv.push_str(&format!(
                "{},{:.3},{},{},{}\n",
                s.seq,
                s.sent_at,
                rtt,
                s.rtt.is_none(),
                s.pod
            ));
        }
        csv
    }
}

/// Pings in flight: hands out sequence numbers, matches pongs, declares the overdue lost.
#[derive(Debug, Default)]
pub struct Pinger {
    next_seq: u64,
    /// `(seq, sent_at)` in sending order, so both columns ascend. A few dozen at most (rate × timeout): a
    /// vector with binary search, not a `BTreeMap`, whose node code would be the larger part of this file in
    /// the wasm.
    in_flight: Vec<(u64, f64)>,
}

impl Pinger {
    /// A new ping sent at `now`.
    pub fn ping(&mut self, now: f64) -> ClientMessage {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push((seq, now));
        ClientMessage::Ping { seq, sent_at: now }
    }

    /// The last ping went out at `now` after all (its text took a moment to build after [`Pinger::ping`]).
    pub fn restamp_last(&mut self, now: f64) {
        if let Some(last) = self.in_flight.last_mut() {
            last.1 = last.1.max(now);
        }
    }

    /// A pong arrived at `now`: the sample, unless the ping is unknown (already declared lost).
    pub fn pong(&mut self, seq: u64, now: f64, pod: &str) -> Option<Sample> {
        let i = self.in_flight.binary_search_by_key(&seq, |&(seq, _)| seq).ok()?;
        let (_, sent_at) = self.in_flight.remove(i);
        Some(Sample {
            seq,
            sent_at,
            rtt: Some((now - sent_at).max(0.0)),
            pod: pod.to_owned(),
        })
    }

    /// Pings older than `timeout` at `now` are lost.
    pub fn expire(&mut self, now: f64, timeout: f64, pod: &str) -> Vec<Sample> {
        // Sent in order, so the overdue ones are the oldest.
        let overdue = self.in_flight.partition_point(|&(_, sent)| now - sent >= timeout);
        self.in_flight
            .drain(..overdue)
            .map(|(seq, sent_at)| lost(seq, sent_at, pod))
            .collect()
    }

    /// The connection died: every ping in flight is lost.
    pub fn abandon(&mut self, pod: &str) -> Vec<Sample> {
        std::mem::take(&mut self.in_flight)
            .into_iter()
            .map(|(seq, sent_at)| lost(seq, sent_at, pod))
            .collect()
    }

    /// Pings waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// A ping that got no answer.
fn lost(seq: u64, sent_at: f64, pod: &str) -> Sample {
    Sample {
        seq,
        sent_at,
        rtt: None,
        pod: pod.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_intervals_stray_around_the_rate_and_keep_it_on_average() {
        assert_eq!(next_due(1000.0, 1000.0, 10.0, 0.0), 1075.0);
        assert_eq!(next_due(1000.0, 1000.0, 10.0, 0.5), 1100.0);
        assert_eq!(next_due(1000.0, 1000.0, 10.0, 1.0), 1125.0);
        // The rate is clamped as the control bar clamps it; a late tick waits for nothing.
        assert_eq!(next_due(0.0, 0.0, 100.0, 0.5), 100.0);
        assert_eq!(next_due(1000.0, 1500.0, 10.0, 0.5), 1500.0);
        // Draws spread evenly over [0, 1) give the rate's mean interval.
        let draws = 1000;
        let mut due = 0.0;
        for i in 0..draws {
            due = next_due(due, due, 10.0, (f64::from(i) + 0.5) / f64::from(draws));
        }
        assert!((due / f64::from(draws) - 100.0).abs() < 1e-9, "{due}");
    }

    fn sample(seq: u64, sent_at: f64, rtt: Option<f64>) -> Sample {
        Sample {
            seq,
            sent_at,
            rtt,
            pod: "p".into(),
        }
    }

    #[test]
    fn pinger_matches_pongs_and_expires_the_rest() {
        let mut pinger = Pinger::default();
        let ClientMessage::Ping { seq: a, .. } = pinger.ping(0.0);
        let ClientMessage::Ping { seq: b, .. } = pinger.ping(500.0);
        assert_eq!((a, b), (0, 1));
        assert_eq!(pinger.pong(a, 12.5, "p"), Some(sample(0, 0.0, Some(12.5))));
        assert_eq!(pinger.pong(a, 13.0, "p"), None, "a pong is counted once");
        assert!(pinger.expire(2000.0, 2000.0, "p").is_empty());
        assert_eq!(pinger.expire(2500.0, 2000.0, "p"), vec![sample(1, 500.0, None)]);
        assert_eq!(
            pinger.pong(b, 2600.0, "p"),
            None,
            "late pongs of lost pings are ignored"
        );
        pinger.ping(3000.0);
        assert_eq!(pinger.abandon("p").len(), 1);
        assert_eq!(pinger.in_flight(), 0);
    }

    #[test]
    fn history_is_bounded_ordered_and_windowed() {
        let mut history = History::default();
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            history.push(sample(i, i as f64, Some(1.0)));
        }
        assert_eq!(history.len(), MAX_SAMPLES);
        assert_eq!(history.samples().next().map(|s| s.seq), Some(10));
        // A late "lost" report lands at its place in time.
        let mut history = History::default();
        history.push(sample(0, 0.0, Some(1.0)));
        history.push(sample(2, 2000.0, Some(1.0)));
        history.push(sample(1, 1000.0, None));
        let order: Vec<u64> = history.samples().map(|s| s.seq).collect();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(history.since(1000.0).count(), 2);
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_sample() {
        let mut history = History::default();
        history.push(sample(0, 1.0, Some(2.25)));
        history.push(sample(1, 2.0, None));
        assert_eq!(
            history.to_csv(),
            "seq,sent_at_ms,rtt_ms,lost,pod\n0,1.000,2.250,false,p\n1,2.000,,true,p\n"
        );
    }

    #[test]
    fn event_labels_say_what_happened() {
        let recovered = EventKind::Recovered { recovery_ms: 840.4 };
        assert_eq!(recovered.label(), "recovered in 840 ms");
        assert_eq!(EventKind::Killed { pod: "x".into() }.label(), "pod killed");
    }
}
