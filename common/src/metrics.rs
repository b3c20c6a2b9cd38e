//! The Prometheus parts both services share: the `build_info` gauge, the HTTP request-duration histogram, and
//! the `/metrics` answer with the content type that matches what `prometheus-client` writes (OpenMetrics text).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What `prometheus_client::encoding::text::encode` writes: OpenMetrics 1.0 text, ending in `# EOF`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Registers `<prefix>_build_info{version="…"} 1`: which build is running, for dashboards and alerts.
pub fn register_build_info(registry: &mut Registry, version: &'static str) {
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels { version }).set(1);
    registry.register("build_info", "The running build (always 1)", info);
}

/// Labels of the HTTP histogram: the route *template* (`/session/{id}`, `fallback` for anything unrouted, so
/// a scanner cannot create series) and the status class (`2xx` … `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route template.
    pub route: String,
    /// `1xx` … `5xx`.
    pub status: &'static str,
}

/// `<prefix>_http_request_duration_seconds`, by route and status class.
#[derive(Clone)]
pub struct HttpMetrics {
    duration: Family<HttpLabels, Histogram>,
}

impl HttpMetrics {
    /// Creates the histogram family and registers it.
    pub fn register(registry: &mut Registry) -> Self {
        // 100 µs .. ~3.3 s; a WebSocket upgrade counts until its 101.
        let duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status class",
            duration.clone(),
        );
        Self { duration }
    }

    /// Records one answered request.
    pub fn observe(&self, route: &str, status: axum::http::StatusCode, seconds: f64) {
        let status = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.duration
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .observe(seconds);
    }
}

/// The `/metrics` answer for `registry`.
pub fn exposition(registry: &Registry) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out).into_response()
}
