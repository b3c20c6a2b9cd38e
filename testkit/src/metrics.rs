//! Scraping a service's `/metrics` the way Prometheus would: the content type must be OpenMetrics text, the
//! body must parse with an OpenMetrics parser, and each named family must have the expected type.

use anyhow::{Context, bail};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

/// A parsed scrape.
pub type Scrape = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// What a family is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Only goes up; samples end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, `_sum` and `_count`.
    Histogram,
}

/// `GET url`, checked and parsed.
pub async fn scrape(url: &str) -> anyhow::Result<Scrape> {
    let response = reqwest::get(url).await.with_context(|| format!("GET {url}"))?;
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !content_type.starts_with("application/openmetrics-text; version=1.0.0") {
        bail!("{url}: content type {content_type:?} does not match the OpenMetrics text it serves");
    }
    let text = response.text().await?;
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .map_err(|e| anyhow::anyhow!("{url} does not parse as OpenMetrics: {e:?}\n{text}"))
}

/// Fails unless every `(family, type)` is in `scrape`, with that type.
pub fn expect_families(scrape: &Scrape, expected: &[(&str, Type)]) -> anyhow::Result<()> {
    for &(name, wanted) in expected {
        let Some(family) = scrape.families.get(name) else {
            let mut names: Vec<&String> = scrape.families.keys().collect();
            names.sort();
            bail!("no family {name}; the scrape has {names:?}");
        };
        let matches = matches!(
            (&family.family_type, wanted),
            (OpenMetricsType::Counter, Type::Counter)
                | (OpenMetricsType::Gauge, Type::Gauge)
                | (OpenMetricsType::Histogram, Type::Histogram)
        );
        if !matches {
            bail!("{name} is a {:?}, not a {wanted:?}", family.family_type);
        }
    }
    Ok(())
}

/// The series of `family` whose labels include every `(name, value)` of `labels`.
fn series<'a>(
    scrape: &'a Scrape,
    family: &str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a OpenMetricsValue> + 'a {
    scrape
        .families
        .get(family)
        .into_iter()
        .flat_map(|family| family.iter_samples())
        .filter(move |sample| {
            sample.get_labelset().is_ok_and(|set| {
                labels
                    .iter()
                    .all(|(name, value)| set.iter().any(|(n, v)| n == name && v == value))
            })
        })
        .map(|sample| &sample.value)
}

/// A counter's total, a gauge's value or a histogram's count.
fn number(value: &OpenMetricsValue) -> Option<f64> {
    match value {
        OpenMetricsValue::Counter(counter) => Some(counter.value.as_f64()),
        OpenMetricsValue::Gauge(gauge) | OpenMetricsValue::Unknown(gauge) => Some(gauge.as_f64()),
        OpenMetricsValue::Histogram(histogram) => histogram.count.map(|c| c as f64),
        _ => None,
    }
}

/// The value of `family`'s first series whose labels include every `(name, value)` of `labels` (for a
/// counter, its total; for a histogram, its count).
pub fn value(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(scrape, family, labels).find_map(number)
}

/// The sum over every series of `family` whose labels include `labels` (counter totals, gauge values, or
/// histogram counts).
pub fn sum(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    series(scrape, family, labels)
        .filter_map(number)
        // Not `sum()`: an empty float sum is -0.0, printed "-0".
        .fold(0.0, |total, value| total + value)
}

/// The `q` quantile (0..1) of the histogram series of `family` with `labels`, as Prometheus'
/// `histogram_quantile` would give it: the upper bound of the first bucket holding that share, interpolated
/// linearly inside the bucket. `None` when the series is absent or empty.
pub fn quantile(scrape: &Scrape, family: &str, labels: &[(&str, &str)], q: f64) -> Option<f64> {
    let histogram = series(scrape, family, labels).find_map(|value| match value {
        OpenMetricsValue::Histogram(histogram) => Some(histogram),
        _ => None,
    })?;
    let total = histogram.count? as f64;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for bucket in &histogram.buckets {
        let count = bucket.count.as_f64();
        if count >= rank {
            if bucket.upper_bound.is_infinite() {
                return Some(lower);
            }
            let share = if count > below {
                (rank - below) / (count - below)
            } else {
                1.0
            };
            return Some(lower + (bucket.upper_bound - lower) * share);
        }
        (lower, below) = (bucket.upper_bound, count);
    }
    None
}
