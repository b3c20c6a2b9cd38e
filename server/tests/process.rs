//! The real binary: flags and environment, SIGTERM handling and exit status.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::Stdio;

use common::protocol::{GoodbyeReason, ServerMessage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::WAIT;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The binary on a port of its choosing on loopback, with `extra` flags; its standard streams are closed unless
/// the test pipes them.
fn server_on_loopback(extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Starts the binary on a free port and waits until it logs that it listens.
async fn spawn_server(env: &[(&str, &str)]) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut command = server_on_loopback(&[]);
    command.envs(env.iter().copied());
    let service = testkit::spawn::Service::start(command, "ping server listening", WAIT)
        .await
        .expect("the server starts");
    (service.child, service.address.parse().unwrap())
}

#[tokio::test]
async fn sigterm_sends_goodbye_and_exits_zero() {
    let (mut child, address) = spawn_server(&[("POD_NAME", "proc-pod"), ("SESSION_ID", "s-9")]).await;
    let mut client = support::Client::connect(&format!("ws://{address}/ws"))
        .await
        .unwrap();
    let hello = client.next_message().await.unwrap();
    assert!(
        matches!(&hello, ServerMessage::Hello { pod, session_id: Some(s), .. } if pod.name == "proc-pod" && s == "s-9"),
        "{hello:?}"
    );

    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(
        client.next_message().await.unwrap(),
        ServerMessage::Goodbye {
            reason: GoodbyeReason::Shutdown
        }
    );
    assert_eq!(client.close_code().await.unwrap(), 1001);
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn bad_flags_fail_fast_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--idle-timeout", "forever"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("idle-timeout"), "{stderr}");
}

#[tokio::test]
async fn prints_the_port_it_listens_on_if_asked() {
    let mut child = server_on_loopback(&["--print-port"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    tokio::time::timeout(WAIT, stdout.read_line(&mut line))
        .await
        .expect("no port printed")
        .unwrap();
    let port: u16 = line.trim().parse().expect("a port number");
    assert_ne!(port, 0);
    // It is the port the server answers on.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    assert!(health.status().is_success());
}

#[tokio::test]
async fn exits_when_stdin_closes_if_asked() {
    let mut child = server_on_loopback(&["--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Closing our end of the pipe is what the parent dying does.
    drop(child.stdin.take());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("server ignored stdin EOF")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn sigterm_still_exits_while_watching_stdin() {
    let mut child = server_on_loopback(&["--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it listens (its first log line), with stdin held open.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("server hung on exit")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_binary_is_an_edge_with_a_key_file_and_refuses_a_weak_key() {
    let dir = std::env::temp_dir().join(format!("edge-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("signing-key");
    let key = "process-test-key-process-test-key-0123456789";
    // As a mounted Secret: with a trailing newline.
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let (_pod, pod_address) = spawn_server(&[("POD_NAME", "session-proc")]).await;
    let (_edge, edge_address) = spawn_server(&[
        ("POD_NAME", "edge-0"),
        ("ROUTE_KEY_FILE", key_file.to_str().unwrap()),
    ])
    .await;
    let now = common::runtime::unix_time_ms() / 1000;
    let route = common::signing::SigningKey::new(key.as_bytes())
        .unwrap()
        .sign_route(&common::signing::RouteClaims {
            sid: "s1".into(),
            pod: "session-proc".into(),
            addr: pod_address.to_string(),
            exp: now + 60,
        });
    let mut client = support::Client::connect(&format!("ws://{edge_address}/ws/session/s1?token={route}"))
        .await
        .unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Hello { pod, .. } if pod.name == "session-proc"
    ));
    client.ping(1, 2.0).await.unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Pong { seq: 1, .. }
    ));

    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .env("ROUTE_KEY", "short")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "a weak key must stop the server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("signing"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn metrics_scrape_parses_as_openmetrics_and_counts_what_happened() {
    use testkit::metrics::{Type, expect_families, scrape, value};
    let command = server_on_loopback(&["--max-pings-per-second", "1000", "--pod-name", "metrics-pod"]);
    let service = testkit::spawn::Service::start(command, "ping server listening", WAIT)
        .await
        .expect("the server starts");
    let base = format!("http://{}", service.address);
    let mut client = support::Client::connect(&format!("ws://{}/ws", service.address))
        .await
        .unwrap();
    client.hello().await.unwrap();
    for seq in 0..70 {
        client.ping_pong(seq).await.unwrap();
    }
    client.send_text("not json").await.unwrap();
    assert!(matches!(
        client.next_message().await.unwrap(),
        ServerMessage::Error { .. }
    ));
    let refused = support::Client::connect_from(
        &format!("ws://{}/ws", service.address),
        Some("https://evil.example"),
    )
    .await;
    assert!(refused.is_err(), "a foreign origin is refused");

    let metrics = scrape(&format!("{base}/metrics")).await.unwrap();
    expect_families(
        &metrics,
        &[
            ("server_build_info", Type::Gauge),
            ("server_connections", Type::Gauge),
            ("server_pings", Type::Counter),
            ("server_ping_handling_seconds", Type::Histogram),
            ("server_refusals", Type::Counter),
            ("server_protocol_errors", Type::Counter),
            ("server_relay_errors", Type::Counter),
            ("server_http_request_duration_seconds", Type::Histogram),
        ],
    )
    .unwrap();
    assert_eq!(
        value(&metrics, "server_connections", &[("kind", "shared")]),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "server_pings", &[]),
        Some(64.0),
        "pings are added in batches of 64"
    );
    assert_eq!(value(&metrics, "server_ping_handling_seconds", &[]), Some(1.0));
    assert_eq!(
        value(&metrics, "server_protocol_errors", &[("code", "malformed_json")]),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "server_refusals", &[("code", "origin_not_allowed")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "server_http_request_duration_seconds",
            &[("route", "/ws"), ("status", "1xx")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "server_http_request_duration_seconds",
            &[("route", "/ws"), ("status", "4xx")]
        ),
        Some(1.0)
    );
}
