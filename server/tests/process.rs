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

/// Starts the binary on a free port and waits until it logs that it listens.
async fn spawn_server(env: &[(&str, &str)]) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server binary");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if log["message"] == "ping server listening" {
                return log["address"].as_str().unwrap().parse().unwrap();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server did not start");
    // Keep draining the logs so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

#[tokio::test]
async fn sigterm_sends_goodbye_and_exits_zero() {
    let (mut child, address) = spawn_server(&[("POD_NAME", "proc-pod"), ("SESSION_ID", "s-9")]).await;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
        .await
        .unwrap();
    let mut client = support::Client { ws };
    let hello = client.next_message().await;
    assert!(
        matches!(&hello, ServerMessage::Hello { pod, session_id: Some(s), .. } if pod.name == "proc-pod" && s == "s-9"),
        "{hello:?}"
    );

    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(
        client.next_message().await,
        ServerMessage::Goodbye {
            reason: GoodbyeReason::Shutdown
        }
    );
    assert_eq!(client.close_code().await, 1001);
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
async fn exits_when_stdin_closes_if_asked() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
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
