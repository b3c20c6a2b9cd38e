//! Every request's answer line, span and request id, read from the subscriber's own output.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

fn app(registry: &mut Registry) -> Router {
    let router = Router::new()
        .route(
            "/session/{id}",
            get(|| async {
                tracing::info!("inside the handler");
                "ok"
            }),
        )
        .route("/broken", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
    common::http::observe(router, common::metrics::HttpMetrics::register(registry))
}

async fn call(app: &Router, uri: &str, id: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(uri);
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status(), id)
}

#[tokio::test]
async fn each_request_logs_one_answer_line_with_route_status_latency_and_its_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut registry = Registry::default();
    let app = app(&mut registry);

    let (status, id) = call(&app, "/session/s-secret-id?token=hunter2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id.len(), 36, "a UUID is made when the client sends none: {id:?}");
    let (status, kept) = call(&app, "/broken", Some("client-id.42")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(kept, "client-id.42", "a sane client id is kept and returned");
    let (_, replaced) = call(&app, "/nope", Some("a b\"c")).await;
    assert_ne!(replaced, "a b\"c", "an id a log reader would trip on is replaced");
    assert_eq!(replaced.len(), 36);

    let logs = captured.text();
    let lines: Vec<&str> = logs.lines().collect();
    let handler = lines
        .iter()
        .find(|l| l.contains("inside the handler"))
        .expect("handler line");
    assert!(
        handler.contains(&format!("request_id={id}")),
        "the handler's own line carries the id: {handler}"
    );
    let answered: Vec<&&str> = lines.iter().filter(|l| l.contains("answered")).collect();
    assert_eq!(answered.len(), 3, "one answer line per request:\n{logs}");
    let ok = answered[0];
    for needle in [
        " INFO ",
        "method=GET",
        "route=/session/{id}",
        "status=200",
        "latency_ms=",
    ] {
        assert!(ok.contains(needle), "{needle} missing from {ok}");
    }
    assert!(
        answered[1].contains(" WARN ") && answered[1].contains("status=500"),
        "{}",
        answered[1]
    );
    assert!(answered[1].contains("request_id=client-id.42"), "{}", answered[1]);
    assert!(
        answered[2].contains("route=fallback") && answered[2].contains("status=404"),
        "{}",
        answered[2]
    );
    assert!(
        !logs.contains(" ERROR "),
        "a 5xx is a warning, not an error:\n{logs}"
    );
    for secret in ["hunter2", "token=", "s-secret-id", "/nope"] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs:\n{logs}");
    }

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for series in [
        "http_request_duration_seconds_count{route=\"/session/{id}\",status=\"2xx\"} 1",
        "http_request_duration_seconds_count{route=\"/broken\",status=\"5xx\"} 1",
        "http_request_duration_seconds_count{route=\"fallback\",status=\"4xx\"} 1",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
}
