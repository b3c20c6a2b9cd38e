//! The real provisioner binary: its pods never outlive it, whether it stops politely or is killed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{WAIT, alive, children_of, server_bin};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary with a warm pool of 2 and waits until both pods exist as its children.
async fn start() -> (Child, String, Vec<u32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--warm-pool-size", "2"])
        .arg("--server-bin")
        .arg(server_bin())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if log["message"] == "provisioner listening" {
                return log["address"].as_str().unwrap().to_owned();
            }
        }
        panic!("provisioner exited before listening");
    })
    .await
    .expect("provisioner did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = reqwest::Client::new();
    let pool_url = format!("http://{address}/pool");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pool: common::api::PoolStatus = http.get(&pool_url).send().await.unwrap().json().await.unwrap();
        if pool.warm == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pool never filled: {pool:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pods = children_of(child.id().unwrap());
    assert_eq!(pods.len(), 2, "expected two pod processes, found {pods:?}");
    (child, address, pods)
}

async fn until_gone(pods: &[u32]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while pods.iter().any(|pid| alive(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods outlived the provisioner: {pods:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_stops_the_provisioner_and_all_its_pods() {
    let (mut child, address, pods) = start().await;
    let session: common::api::CreateSessionResponse = reqwest::Client::new()
        .post(format!("http://{address}/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!session.pod.name.is_empty());
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status}");
    // Killed and reaped before the provisioner exited.
    for pid in &pods {
        assert!(!alive(*pid), "pod {pid} survived");
    }
}

#[tokio::test]
async fn sigkill_of_the_provisioner_still_leaves_no_pod_behind() {
    let (mut child, _, pods) = start().await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // The pods notice their standard input closing and leave on their own.
    until_gone(&pods).await;
}
