//! End-to-end behaviour of `/ws` against a real server on loopback with a real WebSocket client.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use common::protocol::{ErrorCode, GoodbyeReason, PROTOCOL_VERSION, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use support::{TestServer, WAIT};
use testkit::ws::Event;
use tokio_tungstenite::tungstenite::Message;

fn error_code(message: &ServerMessage) -> Option<ErrorCode> {
    match message {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn hello_names_the_pod_and_session() {
    let server = TestServer::start(&["--session-id", "s-42", "--zone", "zone-a"]).await;
    let (_client, hello) = server.connect().await;
    let ServerMessage::Hello {
        protocol,
        pod,
        session_id,
        server_time_ms,
    } = hello
    else {
        panic!("first message must be hello, got {hello:?}");
    };
    assert_eq!(protocol, PROTOCOL_VERSION);
    assert_eq!(pod.name, "test-pod");
    assert_eq!(pod.display_name, common::names::display_name("test-pod"));
    assert_eq!(pod.node.as_deref(), Some("node-1"));
    assert_eq!(pod.zone.as_deref(), Some("zone-a"));
    assert_eq!(session_id.as_deref(), Some("s-42"));
    assert!(
        server_time_ms > 1_600_000_000_000,
        "server time looks wrong: {server_time_ms}"
    );
}

#[tokio::test]
async fn wss_through_a_tls_front_works_with_its_certificate_and_only_with_it() {
    use testkit::tls::{TestCertificate, client_config, terminate};
    let server = TestServer::start(&[]).await;
    let certificate = TestCertificate::for_names(&["localhost"]).unwrap();
    let (front, _task) = terminate(certificate.server.clone(), server.address)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", front.port());
    let trusting = client_config(Some(&certificate.pem)).unwrap();
    let (mut client, hello) = support::Client::connect_hello_tls(&url, trusting).await.unwrap();
    assert_eq!(hello.name, "test-pod");
    client.ping_pong(1).await.unwrap();
    // Without the certificate among its roots, the client refuses the server: verification is on.
    let refused = support::Client::connect_hello_tls(&url, client_config(None).unwrap()).await;
    let error = format!("{:#}", refused.err().expect("an unknown certificate is refused"));
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

#[tokio::test]
async fn shared_server_hello_has_no_session() {
    let server = TestServer::start(&[]).await;
    let (_client, hello) = server.connect().await;
    assert!(matches!(hello, ServerMessage::Hello { session_id: None, pod, .. } if pod.zone.is_none()));
}

#[tokio::test]
async fn ping_gets_pong_with_seq_and_sent_at_echoed() {
    let server = TestServer::start(&[]).await;
    let (mut client, _) = server.connect().await;
    client.ping(7, 1234.5678).await.unwrap();
    let pong = client.next_message().await.unwrap();
    let ServerMessage::Pong {
        seq,
        sent_at,
        pod,
        server_time_ms,
    } = pong
    else {
        panic!("expected pong, got {pong:?}");
    };
    assert_eq!(seq, 7);
    assert_eq!(sent_at.to_bits(), 1234.5678_f64.to_bits());
    assert_eq!(pod, "test-pod");
    assert!(server_time_ms > 0);
}

#[tokio::test]
async fn a_thousand_pings_are_answered_in_order() {
    let server = TestServer::start(&["--max-pings-per-second", "1000000"]).await;
    let (mut client, _) = server.connect().await;
    for seq in 0..1000 {
        client.ping(seq, seq as f64 * 0.5).await.unwrap();
    }
    for expected in 0..1000 {
        match client.next_message().await.unwrap() {
            ServerMessage::Pong { seq, sent_at, .. } => {
                assert_eq!(seq, expected);
                assert_eq!(sent_at, expected as f64 * 0.5);
            }
            other => panic!("expected pong {expected}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let server = TestServer::start(&[]).await;
    let (mut client, _) = server.connect().await;
    // Exactly at the limit is fine (it is just not valid JSON).
    client.send_text(&"x".repeat(1024)).await.unwrap();
    assert_eq!(
        error_code(&client.next_message().await.unwrap()),
        Some(ErrorCode::MalformedJson)
    );
    client.send_text(&"x".repeat(1025)).await.unwrap();
    assert_eq!(client.close_code().await.unwrap(), 1009);
}

#[tokio::test]
async fn far_oversized_message_is_cut_off_without_hurting_others() {
    let server = TestServer::start(&[]).await;
    let (mut bystander, _) = server.connect().await;
    let (mut abuser, _) = server.connect().await;
    // Sending may itself fail half-way: the server drops the connection (1009 or a reset) mid-message.
    let _ = abuser.ws.send(Message::text("x".repeat(1 << 20))).await;
    loop {
        match tokio::time::timeout(WAIT, abuser.ws.next())
            .await
            .expect("abuser still connected")
        {
            Some(Ok(Message::Text(text))) => panic!("expected the connection to end, got {text}"),
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    bystander.ping(1, 1.0).await.unwrap();
    assert!(matches!(
        bystander.next_message().await.unwrap(),
        ServerMessage::Pong { seq: 1, .. }
    ));
}

#[tokio::test]
async fn rate_limit_answers_the_excess_with_rate_limited_and_keeps_the_connection() {
    let server = TestServer::start(&["--max-pings-per-second", "20"]).await;
    let (mut client, _) = server.connect().await;
    for seq in 0..60 {
        client.ping(seq, 0.0).await.unwrap();
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..60 {
        match client.next_message().await.unwrap() {
            ServerMessage::Pong { .. } => pongs += 1,
            message if error_code(&message) == Some(ErrorCode::RateLimited) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        limited >= 20,
        "only {limited} of 60 burst pings were limited ({pongs} pongs)"
    );
    assert!(pongs >= 20, "the first 20 should pass, got {pongs}");
    // The connection is still open: keep pinging until the bucket refills and a pong comes back.
    for seq in 100.. {
        client.ping(seq, 0.0).await.unwrap();
        if let ServerMessage::Pong { seq: answered, .. } = client.next_message().await.unwrap() {
            assert_eq!(answered, seq);
            break;
        }
        assert!(
            seq < 100 + 10_000,
            "the connection never recovered from rate limiting"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn malformed_input_gets_clear_errors_and_the_connection_stays() {
    let server = TestServer::start(&[]).await;
    let (mut client, _) = server.connect().await;
    let cases = [
        ("{not json", ErrorCode::MalformedJson),
        (r#"{"type":"subscribe"}"#, ErrorCode::UnknownType),
        (r#"{"seq":1}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"ping","seq":"one","sent_at":0}"#,
            ErrorCode::InvalidMessage,
        ),
    ];
    for (text, expected) in cases {
        client.send_text(text).await.unwrap();
        let reply = client.next_message().await.unwrap();
        assert_eq!(error_code(&reply), Some(expected), "{text} gave {reply:?}");
        if let ServerMessage::Error { message, .. } = reply {
            assert!(!message.is_empty());
        }
    }
    client.send_binary(vec![1, 2, 3]).await.unwrap();
    assert_eq!(
        error_code(&client.next_message().await.unwrap()),
        Some(ErrorCode::BinaryNotSupported)
    );
    client.ping(5, 5.0).await.unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Pong { seq: 5, .. }
    ));
}

#[tokio::test]
async fn connection_cap_refuses_upgrades_with_503_until_a_slot_frees() {
    let server = TestServer::start(&["--max-connections", "2"]).await;
    let (first, _) = server.connect().await;
    let (_second, _) = server.connect().await;
    match server.try_connect().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "too_many_connections");
        }
        Ok(_) => panic!("third connection should be refused"),
        Err(e) => panic!("expected HTTP 503, got {e}"),
    }
    // Closing one frees its slot once the server notices; retry until it does (bounded).
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if server.try_connect().await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn idle_connection_gets_goodbye_idle_and_close_1000() {
    let server = TestServer::start(&["--idle-timeout", "300ms"]).await;
    let (mut client, _) = server.connect().await;
    let started = std::time::Instant::now();
    assert_eq!(
        client.next_message().await.unwrap(),
        ServerMessage::Goodbye {
            reason: GoodbyeReason::Idle
        }
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "closed too early"
    );
    assert_eq!(client.close_code().await.unwrap(), 1000);
}

#[tokio::test]
async fn shutdown_answers_buffered_pings_then_says_goodbye_with_1001() {
    let mut server = TestServer::start(&["--shutdown-grace", "5s"]).await;
    let (mut client, _) = server.connect().await;
    let (mut other, _) = server.connect().await;
    // The ping is on the wire before shutdown begins: it must be answered (before or after the goodbye, but
    // before the close).
    client.ping(99, 9.9).await.unwrap();
    server.begin_shutdown();
    for (c, expect_pong) in [(&mut client, true), (&mut other, false)] {
        let (mut pong, mut goodbye) = (false, false);
        let code = loop {
            match c.next_event().await.unwrap() {
                Event::Message(ServerMessage::Pong { seq: 99, .. }) => pong = true,
                Event::Message(ServerMessage::Goodbye {
                    reason: GoodbyeReason::Shutdown,
                }) => goodbye = true,
                Event::Message(other) => panic!("unexpected {other:?}"),
                Event::Closed(frame) => break frame.map(|f| u16::from(f.code)),
            }
        };
        assert_eq!((pong, goodbye, code), (expect_pong, true, Some(1001)));
    }
    server.finished().await.expect("clean exit");
}

#[tokio::test]
async fn draining_server_reports_503_on_ready_and_refuses_new_sockets() {
    let mut server = TestServer::start(&["--drain-delay", "30s"]).await;
    let http = reqwest::Client::new();
    let ready = http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let health: serde_json::Value = http
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, serde_json::json!({"status":"ok"}));

    let (mut client, _) = server.connect().await;
    server.begin_shutdown();
    // The open connection is told first, so `draining` is in effect once it has its goodbye.
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Goodbye { .. }
    ));
    let ready = http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "draining"
    );
    match server.try_connect().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503 while draining, got {:?}", other.map(|_| ())),
    }
    // Liveness stays green while draining.
    assert_eq!(
        http.get(server.url("/health")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn activity_reports_connections_and_last_frame() {
    let server = TestServer::start(&[]).await;
    let http = reqwest::Client::new();
    let get = || async {
        http.get(server.url("/activity"))
            .send()
            .await
            .unwrap()
            .json::<common::api::ActivityBody>()
            .await
            .unwrap()
    };
    let idle = get().await;
    assert_eq!(idle.connections, 0);
    let (mut client, _) = server.connect().await;
    client.ping(1, 1.0).await.unwrap();
    client.next_message().await.unwrap();
    let busy = get().await;
    assert_eq!(busy.connections, 1);
    assert!(busy.last_activity_ms >= idle.last_activity_ms);
}

#[tokio::test]
async fn only_allowed_origins_may_open_websockets() {
    let server = TestServer::start(&["--allowed-origin", "https://me.github.io"]).await;
    for origin in [
        "https://me.github.io",
        "http://localhost:8081",
        "http://127.0.0.1:3000",
    ] {
        let mut client = server
            .connect_from(origin)
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        assert!(
            matches!(client.next_message().await.unwrap(), ServerMessage::Hello { .. }),
            "{origin}"
        );
    }
    for origin in [
        "https://evil.example",
        "https://me.github.io.evil.example",
        "null",
    ] {
        match server.connect_from(origin).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin}");
                let body: serde_json::Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"], "origin_not_allowed");
            }
            Ok(_) => panic!("{origin} must be refused"),
            Err(e) => panic!("{origin}: expected HTTP 403, got {e}"),
        }
    }
    // Without the localhost default, localhost pages are refused too.
    let strict = TestServer::start(&["--no-localhost-origins"]).await;
    assert!(strict.connect_from("http://localhost:8081").await.is_err());
    // Non-browser clients send no Origin and pass.
    assert!(strict.try_connect().await.is_ok());
}

#[tokio::test]
async fn oversized_request_heads_get_431_and_the_server_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&[]).await;
    let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let big = "a".repeat(40 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The server may answer and close before reading all of it.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut head = [0_u8; 64];
    let n = tokio::time::timeout(WAIT, stream.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    let (mut client, _) = server.connect().await;
    client.ping(1, 1.0).await.unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Pong { seq: 1, .. }
    ));
}

#[tokio::test]
async fn slow_clients_that_never_finish_their_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(&["--header-read-timeout", "1s"]).await;
    // Fifty slowloris connections: a request line, one header, then silence.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Meanwhile everyone else is served.
    let (mut client, _hello) = server.connect().await;
    client.ping(1, 1.0).await.unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Pong { seq: 1, .. }
    ));
    // Each slow connection is closed by the server (EOF or reset) once the deadline passes.
    for mut stream in slow {
        let mut buffer = [0_u8; 512];
        let read = tokio::time::timeout(support::WAIT, stream.read(&mut buffer))
            .await
            .expect("the server kept a slow connection open");
        match read {
            // hyper may answer 408 before closing; then EOF follows.
            Ok(n) if n > 0 => {
                assert!(
                    buffer.starts_with(b"HTTP/1.1 408"),
                    "{:?}",
                    String::from_utf8_lossy(&buffer[..n])
                );
                let rest = tokio::time::timeout(support::WAIT, stream.read(&mut buffer))
                    .await
                    .unwrap();
                assert!(matches!(rest, Ok(0) | Err(_)));
            }
            Ok(_) | Err(_) => {}
        }
    }
}

#[tokio::test]
async fn a_ping_flood_over_a_thousand_connections_is_limited_and_a_quiet_client_is_unaffected() {
    let server = TestServer::start(&["--max-connections", "1000"]).await;
    let (mut quiet, _) = server.connect().await;
    // 999 flooding connections from 50 addresses (within the per-client cap of 20) fill the server to its
    // limit; one more is refused with 503.
    let mut flooders = Vec::new();
    for i in 0..999 {
        flooders.push(
            server
                .connect_as(testkit::ws::loopback_client(i % 50))
                .await
                .unwrap(),
        );
    }
    match server.connect_as(testkit::ws::loopback_client(999)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("the 1001st connection was not refused: {:?}", other.map(|_| ())),
    }
    // Each flooder sends 40 pings at once: about 20 pongs, the rest `rate_limited`, the connection kept.
    let floods = flooders.into_iter().map(|mut client| {
        tokio::spawn(async move {
            for seq in 0..40 {
                client.ping(seq, 0.0).await.unwrap();
            }
            let (mut pongs, mut limited) = (0, 0);
            for _ in 0..40 {
                match client.next_message().await.unwrap() {
                    ServerMessage::Pong { .. } => pongs += 1,
                    message if error_code(&message) == Some(ErrorCode::RateLimited) => limited += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (pongs, limited, client)
        })
    });
    let floods = futures_util::future::join_all(floods);
    // Meanwhile the quiet client's pings are all answered.
    let quiet_pings = async {
        for seq in 0..10 {
            quiet.ping(seq, 0.0).await.unwrap();
            assert!(
                matches!(quiet.next_message().await.unwrap(), ServerMessage::Pong { seq: s, .. } if s == seq)
            );
        }
    };
    let (results, ()) = tokio::join!(floods, quiet_pings);
    let mut total_limited = 0;
    for result in results {
        let (pongs, limited, mut client) = result.unwrap();
        assert!(pongs >= 20 && limited >= 1, "pongs {pongs}, limited {limited}");
        total_limited += limited;
        // Still connected: a close frame would have been a message above; send one more ping that will be
        // answered one way or the other.
        client.ping(1_000, 0.0).await.unwrap();
        assert!(matches!(
            client.next_message().await.unwrap(),
            ServerMessage::Pong { .. } | ServerMessage::Error { .. }
        ));
    }
    assert!(total_limited >= 999 * 10, "{total_limited} pings limited");
}

/// Floods `client` with pings and never reads, until a send fails (the server gave up on it); bounded in count
/// and in time.
async fn flood_without_reading(client: &mut support::Client) {
    use futures_util::SinkExt;
    let ping = tokio_tungstenite::tungstenite::Message::text(
        common::protocol::ClientMessage::Ping { seq: 1, sent_at: 1.0 }.to_json(),
    );
    let flood = async {
        for _ in 0..5_000_000 {
            if client.ws.send(ping.clone()).await.is_err() {
                return;
            }
        }
        panic!("five million pings went out and the server never cut the connection");
    };
    testkit::wait::within(WAIT, "the server to cut off a client that does not read", flood)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_pin_its_connection() {
    let server = TestServer::start(&[
        "--max-connections",
        "1",
        "--idle-timeout",
        "3s",
        "--write-timeout",
        "1s",
    ])
    .await;
    let (mut hog, _) = server.connect().await;
    flood_without_reading(&mut hog).await;
    // Its slot is free again: the next visitor gets in and is answered.
    let (mut next, _) = testkit::wait::within(WAIT, "the freed slot", async {
        loop {
            if let Ok(mut client) = server.try_connect().await {
                let hello = client.next_message().await.unwrap();
                return (client, hello);
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    next.ping(1, 1.0).await.unwrap();
    assert!(matches!(
        next.next_message().await.unwrap(),
        ServerMessage::Pong { seq: 1, .. }
    ));
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_of_connections() {
    let server = TestServer::start(&["--max-connections-per-client", "3"]).await;
    let greedy = testkit::ws::loopback_client(1);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.connect_as(greedy).await.unwrap());
    }
    match server.connect_as(greedy).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "too_many_client_connections");
        }
        other => panic!(
            "a fourth connection of one client was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    // Another client still gets in.
    server.connect_as(testkit::ws::loopback_client(2)).await.unwrap();
}

#[tokio::test]
async fn behind_a_trusted_proxy_connection_shares_follow_the_forwarded_client() {
    let server = TestServer::start(&[
        "--max-connections-per-client",
        "1",
        "--trusted-proxies",
        "127.0.0.1",
    ])
    .await;
    let url = format!("ws://{}/ws", server.address);
    let via_proxy = |client: &'static str| {
        let url = url.clone();
        async move { support::Client::connect_with(&url, None, &[("x-forwarded-for", client)]).await }
    };
    let _first = via_proxy("198.51.100.1").await.unwrap();
    // The same visitor again, whatever it puts on the left: refused.
    assert!(via_proxy("6.6.6.6, 198.51.100.1").await.is_err());
    // Another visitor behind the same proxy: admitted.
    let _second = via_proxy("198.51.100.2").await.unwrap();
    // A peer that is not the proxy is its own client, whatever it forwards.
    let direct = testkit::ws::loopback_client(9);
    let _third = support::Client::connect_with(&url, Some(direct), &[("x-forwarded-for", "198.51.100.3")])
        .await
        .unwrap();
    assert!(
        support::Client::connect_with(&url, Some(direct), &[("x-forwarded-for", "198.51.100.4")])
            .await
            .is_err()
    );
}
