//! Statistics over the samples in the visible window: last, min, median, mean, p95, p99, max, jitter, standard
//! deviation, loss, and the distribution (histogram and CDF) the chart can show instead of the time series.
//! Percentiles use linear interpolation between closest ranks.

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

/// The `k`-th smallest of `values` (0-based, `k < values.len()`), leaving every value after index `k` at
/// least as large. Hand-written rather than core's `select_nth_unstable_by`, which grew the page by about
/// 0.8 KB gzipped (its introselect with a median-of-medians fallback): a quickselect with the middle element
/// as pivot, linear on round trips (many of them equal, since the browser's clock ticks in 5 µs steps, and
/// none chosen by an adversary). Each round splits the range in two branch-free passes, values below the
/// pivot and then values equal to it: round trips are noise, so a branch on each comparison is mispredicted
/// half the time: the chart's band (150 selections among 240 values each, an hour at 10 Hz) took 0.67 ms
/// natively with one three-way pass per round, and takes 0.36 ms so.
pub fn select(values: &mut [f64], k: usize) -> f64 {
    let (mut low, mut high) = (0, values.len());
    loop {
        if high - low <= 1 {
            return values[low];
        }
        let pivot = values[low + (high - low) / 2];
        // [low, less) < pivot, then [less, equal) == pivot, then [equal, high) > pivot.
        let less = partition(&mut values[low..high], |v| v < pivot) + low;
        let equal = partition(&mut values[less..high], |v| v <= pivot) + less;
        if k < less {
            high = less;
        } else if k >= equal {
            low = equal;
        } else {
            return pivot;
        }
    }
}

/// Moves the values for which `front` holds to the front of `values` (in no particular order) and returns how
/// many there are. Branch-free: every value is swapped, and the front grows by the predicate's 0 or 1.
fn partition(values: &mut [f64], front: impl Fn(f64) -> bool) -> usize {
    let mut end = 0;
    for i in 0..values.len() {
        let value = values[i];
        values.swap(i, end);
        end += usize::from(front(value));
    }
    end
}

/// Percentile `p` (0..=100) of `values`, interpolating between closest ranks. `values` need not be sorted:
/// the ranks are found by selection (linear time), and `values` is left reordered. An hour at 10 Hz is 36,000
/// values, and sorting them on every redraw cost the page several milliseconds in Chromium.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    percentiles(values, [p]).map(|[v]| v)
}

/// Several percentiles of `values` at once, `ps` from the highest down (as [`percentile`] each). Each rank is
/// selected among the values below the one before, so the work shrinks as it goes: p99, p95 and the median of
/// 36,000 values cost about two and a half passes instead of four and a half.
pub fn percentiles<const N: usize>(values: &mut [f64], ps: [f64; N]) -> Option<[f64; N]> {
    let mut out = [0.0; N];
    percentiles_into(values, &ps, &mut out).then_some(out)
}

/// [`percentiles`] on slices: one copy of the code in the page, whatever the number of percentiles asked
/// for. False when `values` is empty.
fn percentiles_into(values: &mut [f64], ps: &[f64], out: &mut [f64]) -> bool {
    let n = values.len();
    if n == 0 {
        return false;
    }
    // values[..end] are at most values[end], and values[end + 1..] at least (once a rank has been selected).
    let mut end = n;
    for (slot, &p) in out.iter_mut().zip(ps) {
        let rank = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
        let low = (rank.floor() as usize).min(end);
        let fraction = rank - low as f64;
        let low_value = if low == end {
            values[end]
        } else {
            select(&mut values[..end], low)
        };
        *slot = if fraction == 0.0 || low + 1 >= n {
            low_value
        } else {
            // The next rank's value: the smallest above `low` in the selected range, or the rank selected
            // before, which bounds it; when `low` is that rank itself, the smallest above it.
            let (above, bound) = if low < end {
                (
                    &values[low + 1..end],
                    values.get(end).copied().unwrap_or(f64::INFINITY),
                )
            } else {
                (&values[low + 1..], f64::INFINITY)
            };
            let high_value = above.iter().copied().fold(bound, f64::min);
            low_value + (high_value - low_value) * fraction
        };
        end = low;
    }
    true
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
        let min = rtts.iter().copied().reduce(f64::min);
        let max = rtts.iter().copied().reduce(f64::max);
        let mut values = rtts;
        let [p99, p95, median] =
            percentiles(&mut values, [99.0, 95.0, 50.0]).map_or([None; 3], |p| p.map(Some));
        Self {
            sent,
            received,
            loss_pct,
            last,
            min,
            median,
            mean,
            p95,
            p99,
            max,
            jitter,
            std_dev,
        }
    }
}

/// The distribution of round trips in a window: equal-width bins from 0 to the largest value, and the CDF.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    /// Width of each bin, ms.
    pub bin_ms: f64,
    /// Samples per bin; bin `i` covers `[i * bin_ms, (i + 1) * bin_ms)` (the last one includes its upper end).
    pub counts: Vec<usize>,
    /// (RTT, fraction of samples at or below it), at most [`CDF_POINTS`] points, increasing; each RTT is the
    /// upper edge of a step of the finer histogram, so within (max − min) / [`CDF_POINTS`] of the true one.
    pub cdf: Vec<(f64, f64)>,
}

/// Most points kept of the CDF (it is drawn as a line; more would not show).
pub const CDF_POINTS: usize = 200;

impl Distribution {
    /// The distribution of the answered samples, in `bins` bins (at least one). The CDF comes from a finer
    /// histogram of [`CDF_POINTS`] steps between the smallest and the largest value, so nothing is sorted
    /// (sorting code costs the page kilobytes, and an hour at 10 Hz is 36,000 values).
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>, bins: usize) -> Self {
        let rtts: Vec<f64> = samples.into_iter().filter_map(|s| s.rtt).collect();
        let (Some(min), Some(max)) = (
            rtts.iter().copied().reduce(f64::min),
            rtts.iter().copied().reduce(f64::max),
        ) else {
            return Self::default();
        };
        let bins = bins.max(1);
        let bin_ms = max.max(f64::MIN_POSITIVE) / bins as f64;
        let mut counts = vec![0; bins];
        let step = (max - min) / CDF_POINTS as f64;
        let mut fine = vec![0_usize; CDF_POINTS];
        for rtt in &rtts {
            counts[((rtt / bin_ms) as usize).min(bins - 1)] += 1;
            let index = if step > 0.0 {
                ((rtt - min) / step) as usize
            } else {
                0
            };
            fine[index.min(CDF_POINTS - 1)] += 1;
        }
        let n = rtts.len() as f64;
        let mut below = 0;
        let mut cdf = Vec::new();
        for (i, count) in fine.iter().enumerate() {
            below += count;
            if *count > 0 {
                let upper = if i == CDF_POINTS - 1 {
                    max
                } else {
                    min + step * (i + 1) as f64
                };
                cdf.push((upper.min(max), below as f64 / n));
            }
        }
        Self { bin_ms, counts, cdf }
    }
}

/// A duration in ms for humans: `0.42 ms`, `1.25 ms`, `12.3 ms`, `840 ms`, or `–` when unknown.
pub fn format_ms(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
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
    fn percentiles_by_selection_match_the_sorted_definition() {
        // Shuffled values with repeats: the selected ranks equal interpolation over the sorted list.
        let values: Vec<f64> = (0..1001).map(|i| ((i * 7919) % 211) as f64 / 7.0).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        for p in [0.0, 5.0, 33.3, 50.0, 95.0, 99.0, 99.9, 100.0] {
            let rank = p / 100.0 * (sorted.len() - 1) as f64;
            let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
            let expected = sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64);
            let mut shuffled = values.clone();
            let got = percentile(&mut shuffled, p).unwrap();
            assert!((got - expected).abs() < 1e-9, "p{p}: {got} != {expected}");
        }
        assert_eq!(percentile(&mut [], 50.0), None);
        // All at once, highest first, on one buffer: the same answers.
        let ps = [100.0, 99.9, 99.0, 95.0, 50.0, 50.0, 33.3, 5.0, 0.0];
        for n in [1, 2, 3, 7, values.len()] {
            let together = percentiles(&mut values[..n].to_vec(), ps).unwrap();
            for (p, got) in ps.into_iter().zip(together) {
                let one = percentile(&mut values[..n].to_vec(), p).unwrap();
                assert!((got - one).abs() < 1e-9, "{n} values, p{p}: {got} != {one}");
            }
        }
        let mut same = vec![2.0; 50];
        assert_eq!((select(&mut same, 0), select(&mut same, 49)), (2.0, 2.0));
        let mut descending: Vec<f64> = (0..100).rev().map(f64::from).collect();
        assert_eq!(select(&mut descending, 10), 10.0);
        assert!(descending[11..].iter().all(|v| *v >= 10.0));
    }

    #[test]
    fn jitter_follows_time_order_not_sorted_order() {
        let s = Stats::of(&samples(&[Some(1.0), Some(9.0), Some(1.0)]));
        assert_eq!(s.jitter, Some(8.0));
    }

    #[test]
    fn the_distribution_bins_every_answered_sample_once() {
        let rtts: Vec<Option<f64>> = (1..=100).map(|i| Some(f64::from(i))).chain([None]).collect();
        let d = Distribution::of(&samples(&rtts), 10);
        assert_eq!(d.bin_ms, 10.0);
        assert_eq!(d.counts.iter().sum::<usize>(), 100, "lost pings are not binned");
        assert_eq!(d.counts[0], 9, "1..=9 below 10 ms");
        assert_eq!(d.counts[9], 11, "90..=100, the top value in the last bin");
        assert_eq!(d.cdf.last(), Some(&(100.0, 1.0)));
        assert!(d.cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!(d.cdf.len() <= CDF_POINTS + 1);
        let many: Vec<Option<f64>> = (0..36_000).map(|i| Some(f64::from(i % 97))).collect();
        assert!(Distribution::of(&samples(&many), 40).cdf.len() <= CDF_POINTS + 1);
        assert_eq!(Distribution::of(&samples(&[None]), 10), Distribution::default());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_ms(None), "–");
        assert_eq!(format_ms(Some(0.4213)), "0.42 ms");
        assert_eq!(format_ms(Some(1.254)), "1.25 ms");
        assert_eq!(format_ms(Some(12.34)), "12.3 ms");
        assert_eq!(format_ms(Some(840.4)), "840 ms");
        assert_eq!(format_resolution(0.005), "5 µs");
        assert_eq!(format_resolution(0.1), "100 µs");
        assert_eq!(format_resolution(1.0), "1.0 ms");
        assert_eq!(format_resolution(0.0), "unknown");
    }
}
