//! The provisioner with its real local backend: sessions reach their own pods, kills heal, caps hold, tokens
//! protect, nothing is left behind.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::HashSet;

use common::api::{ProvisionSource, SessionState};
use support::{TestProvisioner, WAIT};
use testkit::proc::{alive, children_of};
use testkit::ws::WsClient;

#[tokio::test]
async fn a_session_reaches_its_own_pod() {
    let p = TestProvisioner::start(&["--warm-pool-size", "2"]).await;
    p.until_pool("a warm pool", |pool| pool.warm == 2).await;
    let session = p.create_ok().await;
    assert_eq!(session.source, ProvisionSource::Warm);
    assert!(
        session.websocket_url.starts_with("ws://127.0.0.1:"),
        "{}",
        session.websocket_url
    );
    assert_eq!(session.token, support::token_for(&session.session_id));
    assert!(session.provision_ms >= 0.0);
    let (mut client, hello) = WsClient::connect_hello(&session.websocket_url).await.unwrap();
    assert_eq!(hello.name, session.pod.name.as_str());
    assert_eq!(client.ping_pong(1).await.unwrap(), session.pod.name.as_str());
    assert_eq!(client.ping_pong(2).await.unwrap(), session.pod.name.as_str());
    p.stop().await;
}

#[tokio::test]
async fn an_empty_pool_serves_a_cold_session() {
    let p = TestProvisioner::start(&["--warm-pool-size", "0"]).await;
    let session = p.create_ok().await;
    assert_eq!(session.source, ProvisionSource::Cold);
    let (mut client, _) = WsClient::connect_hello(&session.websocket_url).await.unwrap();
    assert_eq!(client.ping_pong(1).await.unwrap(), session.pod.name.as_str());
    p.stop().await;
}

#[tokio::test]
async fn kill_gives_the_session_a_new_ready_pod_and_the_pool_refills() {
    let p = TestProvisioner::start(&["--warm-pool-size", "2"]).await;
    p.until_pool("a warm pool", |pool| pool.warm == 2).await;
    let session = p.create_ok().await;
    let (mut old, _) = WsClient::connect_hello(&session.websocket_url).await.unwrap();

    let kill_path = format!("/session/{}/kill", session.session_id);
    let response = p
        .authorized(reqwest::Method::POST, &kill_path, &session.token)
        .await;
    assert_eq!(response.status(), 202);
    let killed: common::api::KillResponse = response.json().await.unwrap();
    assert_eq!(killed.killed, session.pod.name);
    // The old pod's process is really gone: its socket dies.
    old.until_closed().await.unwrap();

    // The replacement comes from the warm pool, so it is there by the time the kill returns, or very soon.
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let status = p.status(&session.session_id, &session.token).await;
        if status.state == SessionState::Active {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replacement: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let new_pod = status.pod.unwrap();
    assert_ne!(new_pod.name, session.pod.name);
    assert_eq!(status.replacements, 1);
    let (mut client, hello) = WsClient::connect_hello(&status.websocket_url.unwrap())
        .await
        .unwrap();
    assert_eq!(hello.name, new_pod.name.as_str());
    assert_eq!(client.ping_pong(1).await.unwrap(), new_pod.name.as_str());

    // A second kill within the cooldown is refused.
    let again = p
        .authorized(reqwest::Method::POST, &kill_path, &session.token)
        .await;
    assert_eq!(again.status(), 429);
    assert!(again.headers().contains_key("retry-after"));
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"], "kill_cooldown");

    p.until_pool("the pool refilled", |pool| pool.warm == 2 && pool.assigned == 1)
        .await;
    p.stop().await;
}

#[tokio::test]
async fn thirty_concurrent_requests_get_exactly_ten_sessions() {
    let p = TestProvisioner::start(&[
        "--warm-pool-size",
        "2",
        "--max-sessions",
        "10",
        "--session-burst",
        "100",
        "--sessions-per-minute",
        "6000",
    ])
    .await;
    p.until_pool("a warm pool", |pool| pool.warm == 2).await;
    // Thirty clients, each from an address of its own (one address may hold only a few sessions).
    let responses =
        futures_util::future::join_all((0..30).map(|i| p.create_from(testkit::ws::loopback_client(i)))).await;
    let mut created = Vec::new();
    let mut refused = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => created.push(
                response
                    .json::<common::api::CreateSessionResponse>()
                    .await
                    .unwrap(),
            ),
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["error"], "at_capacity");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {:?}", response.text().await),
        }
    }
    assert_eq!((created.len(), refused), (10, 20));
    let pods: HashSet<&str> = created.iter().map(|s| s.pod.name.as_str()).collect();
    assert_eq!(pods.len(), 10, "a pod was assigned to two sessions");
    // Each session's URL reaches its own pod.
    for session in created.iter().take(3) {
        let (_, hello) = WsClient::connect_hello(&session.websocket_url).await.unwrap();
        assert_eq!(hello.name, session.pod.name.as_str());
    }
    p.until_pool("the pool refilled", |pool| pool.warm == 2 && pool.assigned == 10)
        .await;
    assert!(
        p.backend.peak_children() <= 12,
        "peak {} pods",
        p.backend.peak_children()
    );
    p.stop().await;
}

#[tokio::test]
async fn tokens_guard_every_session_endpoint() {
    // Two dozen requests at once: above the per-client rate, which is not what is probed here.
    let p = TestProvisioner::start(&["--warm-pool-size", "1", "--requests-per-second", "1000"]).await;
    let a = p.create_ok().await;
    let b = p.create_ok().await;
    let id = &a.session_id;
    for (method, path) in [
        (reqwest::Method::GET, format!("/session/{id}")),
        (reqwest::Method::POST, format!("/session/{id}/kill")),
        (reqwest::Method::DELETE, format!("/session/{id}")),
    ] {
        let url = p.url(&path);
        let cases: [(Option<String>, u16); 4] = [
            (None, 401),
            (Some("Bearer wrong".into()), 401),
            (Some(format!("Bearer {}", b.token)), 401),
            (Some(format!("Basic {}", a.token)), 401),
        ];
        for (header, expected) in cases {
            let mut request = p.http.request(method.clone(), &url);
            if let Some(header) = &header {
                request = request.header("authorization", header);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), expected, "{method} {path} with {header:?}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        // Another session's token says nothing about an unknown id (401); its own token gets 404.
        let unknown_id = "0123456789abcdef";
        let unknown_url = p.url(&path.replace(id.as_str(), unknown_id));
        let probe = p
            .http
            .request(method.clone(), &unknown_url)
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap();
        assert_eq!(probe.status(), 401, "{method} unknown session, foreign token");
        let unknown = p
            .http
            .request(method.clone(), &unknown_url)
            .bearer_auth(support::token_for(unknown_id))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404, "{method} unknown session");
        assert_eq!(
            unknown.json::<serde_json::Value>().await.unwrap()["error"],
            "session_not_found"
        );
    }
    // Nothing above killed or ended session a.
    assert_eq!(
        p.status(&a.session_id, &a.token).await.state,
        SessionState::Active
    );
    p.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_400_and_413_with_json() {
    let p = TestProvisioner::start(&["--warm-pool-size", "0", "--max-body-bytes", "1024"]).await;
    let post = |body: Vec<u8>| {
        p.http
            .post(p.url("/session"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, status, code) in [
        (b"{not json".to_vec(), 400, "bad_request"),
        (br#"{"pods":1000}"#.to_vec(), 400, "bad_request"),
        (br#"{"client":"x"}"#.repeat(100), 413, "payload_too_large"),
        (vec![b' '; 4096], 413, "payload_too_large"),
    ] {
        let response = post(body).await.unwrap();
        assert_eq!(response.status(), status);
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], code, "{json}");
    }
    // Unknown paths and methods are JSON too, and the service is still up.
    let response = p.http.get(p.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "not_found"
    );
    let response = p.http.put(p.url("/session")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "method_not_allowed"
    );
    assert_eq!(p.create().await.status(), 201);
    p.stop().await;
}

#[tokio::test]
async fn per_client_rate_limit_answers_429_with_retry_after() {
    let p = TestProvisioner::start(&[
        "--warm-pool-size",
        "0",
        "--session-burst",
        "2",
        "--sessions-per-minute",
        "1",
    ])
    .await;
    assert_eq!(p.create().await.status(), 201);
    assert_eq!(p.create().await.status(), 201);
    let limited = p.create().await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(
        limited.json::<serde_json::Value>().await.unwrap()["error"],
        "rate_limited"
    );
    p.stop().await;
}

#[tokio::test]
async fn delete_ends_the_session_and_kills_its_pod() {
    let p = TestProvisioner::start(&["--warm-pool-size", "1"]).await;
    let session = p.create_ok().await;
    let (mut client, _) = WsClient::connect_hello(&session.websocket_url).await.unwrap();
    let path = format!("/session/{}", session.session_id);
    let response = p.authorized(reqwest::Method::DELETE, &path, &session.token).await;
    assert_eq!(response.status(), 204);
    client.until_closed().await.unwrap();
    let status = p.status(&session.session_id, &session.token).await;
    assert_eq!(status.state, SessionState::Ended);
    assert!(status.pod.is_none() && status.websocket_url.is_none());
    p.stop().await;
}

#[tokio::test]
async fn operational_endpoints_report_the_pool() {
    use testkit::metrics::{Type, expect_families, scrape, value};
    let p = TestProvisioner::start(&["--warm-pool-size", "2", "--max-sessions", "7"]).await;
    p.until_pool("a warm pool", |pool| pool.warm == 2).await;
    let session = p.create_ok().await;
    let pool = p.pool().await;
    assert_eq!((pool.target, pool.max_sessions, pool.assigned), (2, 7, 1));
    let health = p.http.get(p.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(p.http.get(p.url("/ready")).send().await.unwrap().status(), 200);
    let metrics = p
        .http
        .get(p.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "provisioner_sessions_created_total{source=\"warm\"} 1",
        "provisioner_pods{state=\"assigned\"} 1",
        "provisioner_assignment_seconds_count 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }

    // A kill healed from the warm pool, then the whole scrape as Prometheus reads it.
    p.until_pool("a warm pod for the replacement", |pool| pool.warm >= 1)
        .await;
    let path = format!("/session/{}/kill", session.session_id);
    let killed = p.authorized(reqwest::Method::POST, &path, &session.token).await;
    assert_eq!(killed.status(), 202);
    p.until_metric("provisioner_recoveries_total{source=\"warm\"}", 1.0)
        .await;
    let scrape = scrape(&p.url("/metrics")).await.unwrap();
    expect_families(
        &scrape,
        &[
            ("provisioner_build_info", Type::Gauge),
            ("provisioner_sessions_created", Type::Counter),
            ("provisioner_sessions_active", Type::Gauge),
            ("provisioner_pods", Type::Gauge),
            ("provisioner_assignment_seconds", Type::Histogram),
            ("provisioner_kills", Type::Counter),
            ("provisioner_replacements", Type::Counter),
            ("provisioner_recoveries", Type::Counter),
            ("provisioner_recovery_seconds", Type::Histogram),
            ("provisioner_http_request_duration_seconds", Type::Histogram),
        ],
    )
    .unwrap();
    assert_eq!(value(&scrape, "provisioner_kills", &[]), Some(1.0));
    assert_eq!(
        value(&scrape, "provisioner_replacements", &[("cause", "kill")]),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "provisioner_recovery_seconds", &[("source", "warm")]),
        Some(1.0)
    );
    let route = [("route", "/session/{id}/kill"), ("status", "2xx")];
    assert_eq!(
        value(&scrape, "provisioner_http_request_duration_seconds", &route),
        Some(1.0)
    );
    p.stop().await;
}

#[tokio::test]
async fn cors_answers_only_allowed_origins() {
    let p = TestProvisioner::start(&[
        "--warm-pool-size",
        "0",
        "--allowed-origin",
        "https://me.github.io",
    ])
    .await;
    for (origin, allowed) in [
        ("https://me.github.io", true),
        ("http://localhost:8080", true),
        ("https://evil.example", false),
    ] {
        let response = p
            .http
            .request(reqwest::Method::OPTIONS, p.url("/session"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        let header = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref() == Some(origin), allowed, "{origin}: {header:?}");
    }
    p.stop().await;
}

#[tokio::test]
async fn stopping_the_provisioner_stops_every_pod() {
    let p = TestProvisioner::start(&["--warm-pool-size", "2"]).await;
    p.until_pool("a warm pool", |pool| pool.warm == 2).await;
    let _session = p.create_ok().await;
    p.until_pool("a refilled pool", |pool| pool.warm == 2).await;
    let children = p.backend.child_pids();
    assert_eq!(children.len(), 3, "expected 3 pods, found {children:?}");
    let ours = children_of(std::process::id());
    assert!(
        children.iter().all(|pid| ours.contains(pid)),
        "pods must be our child processes"
    );
    let backend = p.backend.clone();
    p.stop().await;
    assert_eq!(backend.child_count(), 0);
    for pid in children {
        assert!(!alive(pid), "pod process {pid} survived the provisioner");
    }
}

#[tokio::test]
async fn three_hundred_clients_at_once_never_exceed_the_pod_budget() {
    // Hundreds of distinct clients (behind the trusted ingress, so each has its own rate-limit bucket), a few of
    // them greedy: the global caps hold, every refusal is a quick 429 with Retry-After.
    let p = TestProvisioner::start(&[
        "--warm-pool-size",
        "2",
        "--max-sessions",
        "8",
        "--trusted-proxies",
        "127.0.0.1",
        "--session-burst",
        "2",
    ])
    .await;
    p.until_pool("a warm pool", |pool| pool.warm == 2).await;
    let requests = (0..300).map(|i| {
        // Clients 0..=249 send one request each; 250..=299 share five addresses (ten requests per address).
        let ip = if i < 250 {
            format!("10.1.{}.{}", i / 200, i % 200 + 1)
        } else {
            format!("10.9.0.{}", i % 5 + 1)
        };
        let request = p
            .http
            .post(p.url("/session"))
            .header("x-forwarded-for", ip)
            .send();
        async move {
            let started = std::time::Instant::now();
            let response = request.await.unwrap();
            (response, started.elapsed())
        }
    });
    let responses = futures_util::future::join_all(requests).await;
    let (mut created, mut at_capacity, mut rate_limited) = (0, 0, 0);
    for (response, elapsed) in responses {
        match response.status().as_u16() {
            201 => created += 1,
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                assert!(elapsed < support::WAIT, "a refusal must not wait for a pod");
                let body: serde_json::Value = response.json().await.unwrap();
                match body["error"].as_str().unwrap() {
                    "at_capacity" => at_capacity += 1,
                    "rate_limited" => rate_limited += 1,
                    other => panic!("unexpected 429 {other}"),
                }
            }
            other => panic!("unexpected status {other}: {:?}", response.text().await),
        }
    }
    assert_eq!(created, 8, "exactly max-sessions sessions");
    assert_eq!(created + at_capacity + rate_limited, 300);
    assert!(
        rate_limited >= 40,
        "the five greedy addresses are limited ({rate_limited})"
    );
    p.until_pool("the pool refilled", |pool| pool.warm == 2 && pool.assigned == 8)
        .await;
    assert!(
        p.backend.peak_children() <= 10,
        "peak {} pods, budget 10",
        p.backend.peak_children()
    );
    p.stop().await;
}

/// Reads server-sent events from `response` until `done` says enough (bounded by [`WAIT`]); returns them as
/// (event name, JSON data).
async fn read_events(
    response: &mut reqwest::Response,
    mut done: impl FnMut(&[(String, serde_json::Value)]) -> bool,
) -> Vec<(String, serde_json::Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    testkit::wait::within(WAIT, "the pool's events", async {
        while !done(&events) {
            let Some(chunk) = response.chunk().await.unwrap() else {
                break;
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let name = block.lines().find_map(|l| l.strip_prefix("event: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(name), Some(data)) = (name, data) {
                    events.push((name.to_owned(), serde_json::from_str(data).unwrap()));
                }
            }
        }
    })
    .await
    .unwrap();
    events
}

#[tokio::test]
async fn the_pod_board_streams_a_snapshot_then_every_change_and_ends_on_shutdown() {
    let p = TestProvisioner::start(&["--warm-pool-size", "1", "--max-streams-per-client", "1"]).await;
    p.until_pool("a warm pod", |pool| pool.warm == 1).await;
    let mut stream = p.http.get(p.url("/pool/events")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let events = read_events(&mut stream, |e| !e.is_empty()).await;
    let (name, snapshot) = &events[0];
    assert_eq!(name, "snapshot");
    assert_eq!(snapshot["pods"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot["pods"][0]["state"], "warm");
    // Nothing private travels: no session id, no token, no address.
    let text = snapshot.to_string();
    assert!(!text.contains("127.0.0.1") && !text.contains("session_id") && !text.contains("token"));
    // The client's share of streams is one.
    let second = p.http.get(p.url("/pool/events")).send().await.unwrap();
    assert_eq!(second.status(), 429);
    // A session takes the warm pod and a new one starts: both show up, as they happen.
    let session = p.create_ok().await;
    let mine = session.pod.name.to_string();
    let events = read_events(&mut stream, |e| {
        let assigned = e
            .iter()
            .any(|(_, d)| d["pod"]["name"] == mine && d["pod"]["state"] == "assigned");
        let refilled = e
            .iter()
            .any(|(_, d)| d["pod"]["name"] != mine && d["pod"]["state"] == "warm");
        assigned && refilled
    })
    .await;
    assert!(
        events.iter().all(|(name, _)| name == "pod" || name == "gone"),
        "{events:?}"
    );
    p.stop().await;
    // Shutdown ends the stream: the body completes.
    testkit::wait::within(WAIT, "the stream to end", async {
        while stream.chunk().await.unwrap_or(None).is_some() {}
    })
    .await
    .unwrap();
}
