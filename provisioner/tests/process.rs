//! The real provisioner binary: its pods never outlive it, whether it stops politely or is killed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{WAIT, server_bin};
use testkit::proc::{alive, children_of};
use testkit::spawn::Service;
use tokio::process::{Child, Command};

/// Starts the binary with a warm pool of 2 and waits until both pods exist as its children.
async fn start() -> (Child, String, Vec<u32>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--warm-pool-size", "2"])
        .arg("--server-bin")
        .arg(server_bin());
    let Service { child, address } = Service::start(command, "provisioner listening", WAIT)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    support::until_pool(&http, &format!("http://{address}"), "a full pool", |pool| {
        pool.warm == 2
    })
    .await;
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
    assert!(!session.pod.name.as_str().is_empty());
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
