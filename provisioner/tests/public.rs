//! The public demo cannot be taken over: each rule of the public-internet hardening, tried as an attacker would
//! against the real provisioner and its real local pods. Distinct clients are distinct source addresses in
//! 127.0.0.0/8 (`testkit::ws::loopback_client`), or `X-Forwarded-For` entries sent through a trusted proxy.
//! Every request loop is bounded in count and in time.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use common::api::{CreateSessionResponse, SessionState};
use support::{Step, TestProvisioner, WAIT};
use testkit::ws::{WsClient, loopback_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn error_of(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        retry_after,
    )
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_of_sessions_and_another_still_gets_in() {
    let p = TestProvisioner::start(&["--warm-pool-size", "2", "--max-sessions", "20"]).await;
    let greedy = loopback_client(1);
    for _ in 0..3 {
        assert_eq!(p.create_from(greedy).await.status(), 201);
    }
    let refused = p.create_from(greedy).await;
    let status = refused.status().as_u16();
    let retry_after = refused.headers().get("retry-after").cloned();
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!((status, body["error"].as_str()), (429, Some("too_many_sessions")));
    assert!(retry_after.is_some(), "a refusal says when to come back");
    assert!(
        body["message"].as_str().unwrap().contains("3 sessions"),
        "a sentence the page can show: {body}"
    );
    assert_eq!(
        p.create_from(loopback_client(2)).await.status(),
        201,
        "another client gets in"
    );
    p.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_address_the_proxy_saw() {
    // The test is the trusted proxy (127.0.0.1); each request names its client in X-Forwarded-For.
    let p = TestProvisioner::start(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-sessions-per-client",
        "1",
        "--max-sessions",
        "40",
    ])
    .await;
    let post = |xff: &'static str| {
        p.http
            .post(p.url("/session"))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(post("6.6.6.6, 198.51.100.1").await.unwrap().status(), 201);
    // A made-up leftmost entry does not make a new client: the proxy's entry (rightmost) decides.
    let (status, code, _) = error_of(post("7.7.7.7, 198.51.100.1").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (429, "too_many_sessions"));
    assert_eq!(
        post("198.51.100.2").await.unwrap().status(),
        201,
        "another visitor behind the proxy"
    );
    // A peer that is not a trusted proxy is its own client, whatever it writes in the header.
    let untrusted = support::from(loopback_client(7));
    let from_untrusted = || {
        untrusted
            .post(p.url("/session"))
            .header("x-forwarded-for", "198.51.100.50")
            .send()
    };
    assert_eq!(from_untrusted().await.unwrap().status(), 201);
    let (status, code, _) = error_of(from_untrusted().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (429, "too_many_sessions"));
    p.stop().await;
}

#[tokio::test]
async fn a_foreign_page_cannot_spend_sessions_and_a_rebinding_host_is_refused() {
    let p = TestProvisioner::start(&["--allowed-origin", "https://me.github.io"]).await;
    p.until_pool("a warm pool", |pool| pool.warm == 2).await;
    let evil = p
        .http
        .post(p.url("/session"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(evil).await;
    assert_eq!((status, code.as_str()), (403, "origin_not_allowed"));
    assert_eq!(p.pool().await.assigned, 0, "refused before any work");
    let allowed = p
        .http
        .post(p.url("/session"))
        .header("origin", "https://me.github.io");
    assert_eq!(allowed.send().await.unwrap().status(), 201);
    assert_eq!(p.create().await.status(), 201, "no Origin: not a browser, passes");
    // A page at evil.example whose name now resolves to 127.0.0.1 names its own host: the loopback provisioner
    // answers only to loopback names.
    let rebound = p
        .http
        .get(p.url("/pool"))
        .header("host", "evil.example:8081")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(rebound).await;
    assert_eq!((status, code.as_str()), (403, "host_not_allowed"));
    p.stop().await;
}

#[tokio::test]
async fn every_session_endpoint_is_rate_limited_per_client() {
    let p = TestProvisioner::start(&["--requests-per-second", "5"]).await;
    let session = p.create_ok().await;
    let poll = || {
        p.http
            .get(p.url(&format!("/session/{}", session.session_id)))
            .bearer_auth(&session.token)
            .send()
    };
    let mut limited = None;
    for _ in 0..50 {
        let response = poll().await.unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let (_, code, retry_after) = error_of(limited.expect("50 requests at once are limited")).await;
    assert_eq!(code, "rate_limited");
    assert!(retry_after.is_some());
    // Another client is not affected.
    let other = support::from(loopback_client(3));
    let other_session = other.post(p.url("/session")).send().await.unwrap();
    assert_eq!(other_session.status(), 201);
    p.stop().await;
}

/// A raw HTTP/1.1 request on its own connection; returns the connection.
async fn raw(
    p: &TestProvisioner<impl provisioner::backend::Backend + Clone>,
    head: &str,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(p.address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Everything the server writes until it closes the connection (bounded by [`WAIT`]).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    testkit::wait::within(
        WAIT,
        "the server to close the connection",
        stream.read_to_end(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off() {
    let p = TestProvisioner::start(&["--body-read-timeout", "1s", "--header-read-timeout", "1s"]).await;
    // A body announced and never sent: 408 with the JSON body, and the connection closed.
    let head = format!(
        "POST /session HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
        p.address
    );
    let mut stream = raw(&p, &head).await;
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
    // A body that trickles in, a byte at a time, gets the same: the deadline is for the whole body.
    let head = format!(
        "POST /session HTTP/1.1\r\nhost: {}\r\ncontent-length: 100\r\n\r\n",
        p.address
    );
    let (mut reader, mut writer) = raw(&p, &head).await.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    testkit::wait::within(
        WAIT,
        "the trickling body's answer",
        reader.read_to_end(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    trickle.abort();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    // A connection that sends nothing, and one that sends half an HTTP/2 preface, are closed.
    for opening in ["", "PRI * HTTP/2.0\r\n"] {
        let mut stream = raw(&p, opening).await;
        until_closed(&mut stream).await;
    }
    // The service goes on.
    assert_eq!(p.create().await.status(), 201);
    p.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_whatever_a_client_holds_open() {
    let p = TestProvisioner::start(&["--body-read-timeout", "1h", "--shutdown-timeout", "1s"]).await;
    let head = format!(
        "POST /session HTTP/1.1\r\nhost: {}\r\ncontent-length: 100\r\n\r\n",
        p.address
    );
    let _held = raw(&p, &head).await;
    // The request is in flight (the body never comes); stopping still finishes within the bound.
    p.stop().await;
}

#[tokio::test]
async fn sessions_nobody_uses_end_and_free_their_pods() {
    let p = TestProvisioner::start(&[
        "--warm-pool-size",
        "1",
        "--first-connect-timeout",
        "1s",
        "--reconnect-timeout",
        "1s",
        "--resync-interval",
        "100ms",
        "--kill-cooldown",
        "0s",
    ])
    .await;
    // Never connected: it ends once the first-connect timeout has passed.
    let unused = p.create_ok().await;
    // Connected and kept open: it stays.
    let kept = p.create_ok().await;
    let (mut kept_socket, _) = WsClient::connect_hello(&kept.websocket_url).await.unwrap();
    // Connected, then gone without a goodbye (a closed tab): it ends once the reconnect timeout has passed.
    let closed = p.create_ok().await;
    let (closed_socket, _) = WsClient::connect_hello(&closed.websocket_url).await.unwrap();
    drop(closed_socket);
    p.until_state(&unused.session_id, &unused.token, SessionState::Ended)
        .await;
    p.until_state(&closed.session_id, &closed.token, SessionState::Ended)
        .await;
    kept_socket.ping_pong(1).await.unwrap();
    assert_eq!(
        p.status(&kept.session_id, &kept.token).await.state,
        SessionState::Active
    );
    // A replacement after a kill is held to the same first-connect rule.
    let kill = format!("/session/{}/kill", kept.session_id);
    assert_eq!(
        p.authorized(reqwest::Method::POST, &kill, &kept.token)
            .await
            .status(),
        202
    );
    p.until_state(&kept.session_id, &kept.token, SessionState::Ended)
        .await;
    let metrics = p.metrics().await;
    for reason in ["never_connected", "disconnected"] {
        let sample = format!("provisioner_sessions_ended_total{{reason=\"{reason}\"}}");
        assert!(
            support::metric(&metrics, &sample) >= 1.0,
            "{sample} in\n{metrics}"
        );
    }
    p.until_pool("only the warm pod left", |pool| {
        pool.assigned == 0 && pool.warm == 1
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn a_client_that_hangs_up_during_a_cold_start_leaks_no_session() {
    // Unused sessions would end on their own after a while; that is not what is tested here.
    let (p, gate) = TestProvisioner::start_gated(
        &[
            "--warm-pool-size",
            "0",
            "--first-connect-timeout",
            "10m",
            "--reconnect-timeout",
            "10m",
        ],
        Step::Create,
    )
    .await;
    let head = format!(
        "POST /session HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n\r\n",
        p.address
    );
    let stream = raw(&p, &head).await;
    // The cold start has begun (its pod is being created) when the client hangs up.
    gate.reached().await;
    drop(stream);
    // The provisioner has noticed the hang-up before the cold start goes on.
    p.until_metric("provisioner_client_hangups_total", 1.0).await;
    gate.release();
    p.until_metric("provisioner_sessions_ended_total{reason=\"client_gone\"}", 1.0)
        .await;
    p.until_pool("no session left", |pool| pool.assigned == 0 && pool.starting == 0)
        .await;
    // The pool still works.
    let session: CreateSessionResponse = p.create_ok().await;
    assert!(!session.pod.name.as_str().is_empty());
    p.stop().await;
}

#[tokio::test]
async fn draining_answers_ready_503_and_still_answers_a_pending_cold_start() {
    let (mut p, gate) =
        TestProvisioner::start_gated(&["--warm-pool-size", "0", "--drain-delay", "2s"], Step::Create).await;
    let url = p.url("/session");
    let http = p.http.clone();
    let pending = tokio::spawn(async move { http.post(url).send().await.unwrap().status() });
    gate.reached().await;
    p.begin_stop();
    let ready_url = p.url("/ready");
    let draining = testkit::wait::within(WAIT, "/ready to turn 503", async {
        loop {
            let status = p.http.get(&ready_url).send().await.unwrap().status();
            if status == 503 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    draining.await.unwrap();
    gate.release();
    assert_eq!(
        pending.await.unwrap(),
        201,
        "the cold start in flight is answered"
    );
    p.stop().await;
}
