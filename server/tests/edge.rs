//! The edge role against real servers on loopback: a browser reaches its own session pod through an edge
//! server with the provisioner's signed route, and nothing else gets through.

#![allow(clippy::unwrap_used)]

mod support;

use common::protocol::{GoodbyeReason, ServerMessage};
use common::signing::{RouteClaims, SigningKey};
use support::TestServer;
use testkit::ws::Event;
use tokio_tungstenite::tungstenite;

const KEY: &str = "edge-test-signing-key-edge-test-signing-key";

fn key() -> SigningKey {
    SigningKey::new(KEY.as_bytes()).unwrap()
}

fn now() -> u64 {
    common::runtime::unix_time_ms() / 1000
}

fn route(session: &str, pod: &TestServer, exp: u64) -> String {
    let claims = RouteClaims {
        sid: session.into(),
        pod: pod.name.clone(),
        addr: pod.address.to_string(),
        exp,
    };
    format!("/ws/session/{session}?token={}", key().sign_route(&claims))
}

async fn edge() -> TestServer {
    TestServer::start_named("edge-0", &["--route-key", KEY]).await
}

/// The HTTP refusal of an upgrade: status and JSON `error` code.
async fn refusal(server: &TestServer, path: &str, origin: Option<&str>) -> (u16, String) {
    match server.connect_path(path, origin).await {
        Err(tungstenite::Error::Http(response)) => {
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            (
                response.status().as_u16(),
                body["error"].as_str().unwrap().to_owned(),
            )
        }
        Ok(_) => panic!("{path} was accepted"),
        Err(other) => panic!("{path}: {other}"),
    }
}

fn pod_name(hello: &ServerMessage) -> &str {
    match hello {
        ServerMessage::Hello { pod, .. } => &pod.name,
        other => panic!("expected hello, got {other:?}"),
    }
}

#[tokio::test]
async fn a_signed_route_reaches_its_own_pod_and_pings_flow() {
    let _other = TestServer::start_named("session-a", &[]).await;
    let mine = TestServer::start_named("session-b", &[]).await;
    let edge = edge().await;
    let mut client = edge
        .connect_path(&route("s1", &mine, now() + 60), Some("http://localhost:8080"))
        .await
        .unwrap();
    assert_eq!(pod_name(&client.next_message().await.unwrap()), "session-b");
    for seq in 1..=3 {
        client.ping(seq, 1.5).await.unwrap();
        match client.next_message().await.unwrap() {
            ServerMessage::Pong { seq: got, pod, .. } => assert_eq!((got, pod.as_str()), (seq, "session-b")),
            other => panic!("expected pong, got {other:?}"),
        }
    }
    // Protocol errors from the pod come through unchanged, and the relay keeps going.
    client.send_text("{not json").await.unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Error { .. }
    ));
    client.ping(4, 1.5).await.unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Pong { seq: 4, .. }
    ));
}

#[tokio::test]
async fn unsigned_tampered_expired_and_foreign_routes_are_refused() {
    let pod = TestServer::start_named("session-b", &[]).await;
    let edge = edge().await;
    let good = route("s1", &pod, now() + 60);

    assert_eq!(
        refusal(&edge, "/ws/session/s1", None).await,
        (401, "missing_token".into())
    );
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        refusal(&edge, &tampered, None).await,
        (401, "invalid_token".into())
    );
    let other_key = SigningKey::new(vec![9; 32]).unwrap().sign_route(&RouteClaims {
        sid: "s1".into(),
        pod: "p".into(),
        addr: pod.address.to_string(),
        exp: now() + 60,
    });
    assert_eq!(
        refusal(&edge, &format!("/ws/session/s1?token={other_key}"), None).await,
        (401, "invalid_token".into())
    );
    let expired = route("s1", &pod, now() - 1);
    assert_eq!(
        refusal(&edge, &expired, None).await,
        (401, "token_expired".into())
    );
    // s1's route presented for s2.
    let foreign = good.replace("/ws/session/s1?", "/ws/session/s2?");
    assert_eq!(
        refusal(&edge, &foreign, None).await,
        (401, "invalid_token".into())
    );
    assert_eq!(
        refusal(&edge, &good, Some("https://evil.example")).await,
        (403, "origin_not_allowed".into())
    );
    // A valid route to an address where no pod answers.
    let dead_route = format!(
        "/ws/session/s1?token={}",
        key().sign_route(&RouteClaims {
            sid: "s1".into(),
            pod: "session-dead".into(),
            addr: "127.0.0.1:1".into(),
            exp: now() + 60,
        })
    );
    assert_eq!(
        refusal(&edge, &dead_route, None).await,
        (502, "pod_unreachable".into())
    );
    // A server without the key does not route at all.
    let plain = TestServer::start(&[]).await;
    assert_eq!(refusal(&plain, &good, None).await, (404, "edge_disabled".into()));
    // The edge still works after all that.
    let mut client = edge.connect_path(&good, None).await.unwrap();
    assert_eq!(pod_name(&client.next_message().await.unwrap()), "session-b");
}

#[tokio::test]
async fn a_pod_going_away_and_the_edge_draining_both_reach_the_browser() {
    let mut pod = TestServer::start_named("session-b", &[]).await;
    let mut edge = edge().await;
    let path = route("s1", &pod, now() + 60);

    let mut client = edge.connect_path(&path, None).await.unwrap();
    client.next_message().await.unwrap();
    pod.begin_shutdown();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Goodbye {
            reason: GoodbyeReason::Shutdown,
            ..
        }
    ));
    assert_eq!(
        client.close_code().await.unwrap(),
        1001,
        "the pod's own close frame, relayed"
    );
    pod.finished().await.unwrap();

    let pod = TestServer::start_named("session-c", &[]).await;
    let path = route("s1", &pod, now() + 60);
    let mut client = edge.connect_path(&path, None).await.unwrap();
    client.next_message().await.unwrap();
    edge.begin_shutdown();
    match client.next_event().await.unwrap() {
        Event::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected the edge's close, got {other:?}"),
    }
    edge.finished().await.unwrap();
}

#[tokio::test]
async fn the_edge_takes_the_same_message_sizes_as_the_pod() {
    // A limit above the 64 KiB ceiling: a message between the two reaches the pod directly, and must reach it
    // through the edge too (the two routes once configured their sockets differently).
    let limit = ["--max-message-bytes", "100000"];
    let mine = TestServer::start_named("session-b", &limit).await;
    let edge =
        TestServer::start_named("edge-0", &["--route-key", KEY, "--max-message-bytes", "100000"]).await;
    let big = "x".repeat(80_000);
    let (mut direct, _) = mine.connect().await;
    let mut relayed = edge
        .connect_path(&route("s1", &mine, now() + 60), None)
        .await
        .unwrap();
    relayed.next_message().await.unwrap();
    for (how, client) in [("directly", &mut direct), ("through the edge", &mut relayed)] {
        client.send_text(&big).await.unwrap();
        match client.next_event().await.unwrap() {
            Event::Message(ServerMessage::Error { code, .. }) => {
                assert_eq!(code, common::protocol::ErrorCode::MalformedJson, "{how}");
            }
            other => panic!("{how}: expected the pod's error answer, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_route_to_an_address_another_pod_now_answers_is_refused() {
    // The route names session-b, but the address it holds is answered by session-z (a reused pod IP).
    let other = TestServer::start_named("session-z", &[]).await;
    let edge = edge().await;
    let claims = RouteClaims {
        sid: "s1".into(),
        pod: "session-b".into(),
        addr: other.address.to_string(),
        exp: now() + 60,
    };
    let path = format!("/ws/session/s1?token={}", key().sign_route(&claims));
    assert_eq!(
        refusal(&edge, &path, None).await,
        (502, "pod_unreachable".to_owned())
    );
}

#[tokio::test]
async fn a_browser_that_never_reads_cannot_pin_its_relay() {
    let pod = TestServer::start_named("session-b", &[]).await;
    let edge = TestServer::start_named(
        "edge-0",
        &[
            "--route-key",
            KEY,
            "--max-connections",
            "1",
            "--write-timeout",
            "1s",
        ],
    )
    .await;
    let path = route("s1", &pod, now() + 60);
    let mut hog = edge.connect_path(&path, None).await.unwrap();
    hog.next_message().await.unwrap();
    let flood = async {
        use futures_util::SinkExt;
        let ping = tokio_tungstenite::tungstenite::Message::text(
            common::protocol::ClientMessage::Ping { seq: 1, sent_at: 1.0 }.to_json(),
        );
        for _ in 0..5_000_000 {
            if hog.ws.send(ping.clone()).await.is_err() {
                return;
            }
        }
        panic!("the edge never cut off a browser that does not read");
    };
    testkit::wait::within(support::WAIT, "the edge to cut the relay", flood)
        .await
        .unwrap();
    let mut next = testkit::wait::within(support::WAIT, "the freed relay slot", async {
        loop {
            if let Ok(client) = edge.connect_path(&path, None).await {
                return client;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert!(matches!(
        next.next_message().await.unwrap(),
        ServerMessage::Hello { .. }
    ));
}

#[tokio::test]
async fn the_edge_holds_each_client_to_its_share_of_relays() {
    let pod = TestServer::start_named("session-b", &[]).await;
    let edge = TestServer::start_named(
        "edge-0",
        &["--route-key", KEY, "--max-connections-per-client", "1"],
    )
    .await;
    let url = format!("ws://{}{}", edge.address, route("s1", &pod, now() + 60));
    let greedy = testkit::ws::loopback_client(1);
    let _first = support::Client::connect_with(&url, Some(greedy), &[])
        .await
        .unwrap();
    match support::Client::connect_with(&url, Some(greedy), &[]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!(
            "a second relay of one client was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    let _other = support::Client::connect_with(&url, Some(testkit::ws::loopback_client(2)), &[])
        .await
        .unwrap();
}
