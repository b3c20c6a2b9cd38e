//! Statistics over the samples in the visible window: last, min, median, mean, p95, p99, max, jitter, standard
//! deviation, loss. Percentiles use linear interpolation between closest ranks.

use crate::samples::Sample;

/// Summary of a set of samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Pings sent (answered or lost).
    pub sent: usize,
    /// Pongs received.
    pub received: usize,
    /// Lost pings in percent of sent.
    pub loss_pct: f64,
    /// The most recent RTT.
    pub last: Option<f64>,
    /// Smallest RTT.
    pub min: Option<f64>,
    /// Median RTT.
    pub median: Option<f64>,
    /// Mean RTT.
    pub mean: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest RTT.
    pub max: Option<f64>,
    /// Mean absolute difference of consecutive RTTs (RFC 3550-style jitter without smoothing).
    pub jitter: Option<f64>,
    /// Population standard deviation.
    pub std_dev: Option<f64>,
}

/// Percentile `p` (0..=100) of sorted values, interpolating between closest ranks.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    match sorted.len() {
        0 => None,
        1 => Some(sorted[0]),
        n => {
            let rank = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let low = rank.floor() as usize;
            let high = rank.ceil() as usize;
            Some(sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64))
        }
    }
}

impl Stats {
    /// Statistics of `samples` (in time order).
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut sent = 0;
        let mut rtts = Vec::new();
        for sample in samples {
            sent += 1;
            if let Some(rtt) = sample.rtt {
                rtts.push(rtt);
            }
        }
        let received = rtts.len();
        let loss_pct = if sent == 0 {
            0.0
        } else {
            (sent - received) as f64 * 100.0 / sent as f64
        };
        let jitter = (rtts.len() >= 2)
            .then(|| rtts.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (rtts.len() - 1) as f64);
        let last = rtts.last().copied();
        let mean = (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64);
        let std_dev =
            mean.map(|m| (rtts.iter().map(|r| (r - m).powi(2)).sum::<f64>() / rtts.len() as f64).sqrt());
        let mut sorted = rtts;
        sorted.sort_by(f64::total_cmp);
        Self {
            sent,
            received,
            loss_pct,
            last,
            min: sorted.first().copied(),
            median: percentile(&sorted, 50.0),
            mean,
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied(),
            jitter,
            std_dev,
        }
    }
}

/// A duration in ms for humans: `0.42 ms`, `12.3 ms`, `840 ms`, or `–` when unknown.
pub fn format_ms(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(v) if v < 1.0 => format!("{v:.2} ms"),
        Some(v) if v < 100.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// A timer resolution for humans: microseconds below a millisecond (`5 µs`, `100 µs`), else `1.0 ms`.
pub fn format_resolution(ms: f64) -> String {
    if ms <= 0.0 {
        "unknown".to_owned()
    } else if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rtts: &[Option<f64>]) -> Vec<Sample> {
        rtts.iter()
            .enumerate()
            .map(|(i, rtt)| Sample {
                seq: i as u64,
                sent_at: i as f64 * 1000.0,
                rtt: *rtt,
                pod: "p".into(),
            })
            .collect()
    }

    #[test]
    fn known_values() {
        let s = Stats::of(&samples(&[Some(10.0), Some(20.0), None, Some(30.0), Some(40.0)]));
        assert_eq!((s.sent, s.received), (5, 4));
        assert_eq!(s.loss_pct, 20.0);
        assert_eq!((s.min, s.max, s.last), (Some(10.0), Some(40.0), Some(40.0)));
        assert_eq!(s.mean, Some(25.0));
        assert_eq!(s.median, Some(25.0));
        assert_eq!(s.jitter, Some(10.0));
        assert!((s.std_dev.unwrap() - 125.0_f64.sqrt()).abs() < 1e-9);
        assert!((s.p95.unwrap() - 38.5).abs() < 1e-9);
    }

    #[test]
    fn empty_and_single() {
        let empty = Stats::of(&[]);
        assert_eq!(empty, Stats::default());
        let one = Stats::of(&samples(&[Some(5.0)]));
        assert_eq!((one.median, one.p99, one.jitter), (Some(5.0), Some(5.0), None));
        let lost = Stats::of(&samples(&[None, None]));
        assert_eq!((lost.loss_pct, lost.mean), (100.0, None));
    }

    #[test]
    fn jitter_follows_time_order_not_sorted_order() {
        let s = Stats::of(&samples(&[Some(1.0), Some(9.0), Some(1.0)]));
        assert_eq!(s.jitter, Some(8.0));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_ms(None), "–");
        assert_eq!(format_ms(Some(0.4213)), "0.42 ms");
        assert_eq!(format_ms(Some(12.34)), "12.3 ms");
        assert_eq!(format_ms(Some(840.4)), "840 ms");
        assert_eq!(format_resolution(0.005), "5 µs");
        assert_eq!(format_resolution(0.1), "100 µs");
        assert_eq!(format_resolution(1.0), "1.0 ms");
        assert_eq!(format_resolution(0.0), "unknown");
    }
}
