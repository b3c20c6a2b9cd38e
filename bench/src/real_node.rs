//! What a visitor waits for on a real node (`testkit::node`): the chart installed with helm, its pods real
//! containers of the images `cargo xtask images` builds, everything reached through Traefik on the host at
//! `http://localhost` as in the real-node test:
//! - warm `POST /session` (a claim of a ready pod);
//! - cold start: `POST /session` with an empty pool, that is a Job created, its pod scheduled, its sandbox and
//!   container started, the server ready, the pod claimed;
//! - recovery: from sending the kill to the first pong from the replacement, at the client;
//! - the resident memory of a session pod's server process, idle and with a WebSocket open.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::api::{CreateSessionResponse, KillResponse, PoolStatus, SessionStatus};
use testkit::node::{self, NodeCluster};
use testkit::traefik::{Routes, Traefik};
use testkit::ws::WsClient;

use crate::Row;
use crate::ping::histogram;

const NAMESPACE: &str = "bench";
const BASE: &str = "http://localhost";
const WARM_ROUNDS: usize = 50;
const COLD_ROUNDS: usize = 20;
const KILL_ROUNDS: usize = 20;

/// Runs helm against the node's cluster in the benchmark's namespace.
fn helm(node: &NodeCluster, args: &[&str]) -> anyhow::Result<()> {
    let bin = testkit::cluster::binaries()?;
    let out = std::process::Command::new(bin.join("helm"))
        .arg("--kubeconfig")
        .arg(node.cluster.kubeconfig())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn until_warm(http: &reqwest::Client, warm: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status: Option<PoolStatus> = match http.get(format!("{BASE}/pool")).send().await {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        if status.is_some_and(|s| s.warm == warm && s.assigned == 0 && s.starting == 0) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pool never settled at {warm} warm pods"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of its own address (`127.0.<group>.<round + 1>`): the provisioner limits how many sessions one
/// client creates per minute, and each round is a visitor of its own.
fn visitor(group: u8, round: usize) -> anyhow::Result<reqwest::Client> {
    let host = u8::try_from(round + 1)?;
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(std::net::IpAddr::from([127, 0, group, host]))
        .build()?)
}

async fn create(http: &reqwest::Client) -> anyhow::Result<CreateSessionResponse> {
    let response = http
        .post(format!("{BASE}/session"))
        .json(&serde_json::json!({}))
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status == 201,
        "POST /session: {status} {}",
        response.text().await?
    );
    Ok(response.json().await?)
}

async fn end(http: &reqwest::Client, session: &CreateSessionResponse) -> anyhow::Result<()> {
    http.delete(format!("{BASE}/session/{}", session.session_id))
        .bearer_auth(&session.token)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// The session's new pod's WebSocket URL, once `GET /session/{id}` names another pod than before.
async fn replacement(http: &reqwest::Client, session: &CreateSessionResponse) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: SessionStatus = http
            .get(format!("{BASE}/session/{}", session.session_id))
            .bearer_auth(&session.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if let (Some(pod), Some(url)) = (status.pod, status.websocket_url)
            && pod.name != session.pod.name
        {
            return Ok(url);
        }
        anyhow::ensure!(Instant::now() < deadline, "no replacement within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

/// Cold start, warm claims, recovery and a session pod's memory on a real node.
pub async fn run() -> anyhow::Result<Vec<Row>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let images =
        std::env::var_os("SHOWCASE_IMAGES").map_or_else(|| root.join("target/images"), PathBuf::from);
    let node = NodeCluster::start(&images).await?;
    let _ingress = Traefik::start(&node, NAMESPACE, "127.0.0.1:80".parse()?, false, Routes::Ingress).await?;
    let chart = root.join("helm/resume-showcase");
    let chart = chart.to_str().unwrap_or_default().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Cold starts first: an empty pool.
    let mut args = vec![
        "install",
        "demo",
        &chart,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
    ];
    let set = node::chart_values(0, &[]);
    args.extend(set.iter().map(String::as_str));
    helm(&node, &args)?;
    let mut cold = histogram();
    for round in 0..COLD_ROUNDS {
        until_warm(&http, 0).await?;
        let visitor = visitor(10, round)?;
        let started = Instant::now();
        let session = create(&visitor).await?;
        cold.record(started.elapsed().as_nanos() as u64)?;
        end(&visitor, &session).await?;
    }

    // Then a warm pool of two.
    let mut args = vec!["upgrade", "demo", &chart, "--wait", "--timeout", "3m"];
    let set = node::chart_values(2, &[]);
    args.extend(set.iter().map(String::as_str));
    helm(&node, &args)?;
    let mut warm = histogram();
    for round in 0..WARM_ROUNDS {
        until_warm(&http, 2).await?;
        let visitor = visitor(11, round)?;
        let started = Instant::now();
        let session = create(&visitor).await?;
        warm.record(started.elapsed().as_nanos() as u64)?;
        end(&visitor, &session).await?;
    }

    let mut recovery = histogram();
    let mut named = 0;
    let (mut idle_rss, mut busy_rss) = (0, 0);
    for round in 0..KILL_ROUNDS {
        until_warm(&http, 2).await?;
        let http = visitor(12, round)?;
        let session = create(&http).await?;
        let (mut socket, _) = WsClient::connect_hello(&session.websocket_url).await?;
        socket.ping_pong(1).await?;
        if round == 0 {
            let pods = node.pods_of_job(NAMESPACE, session.pod.name.as_ref()).await?;
            let pod = pods
                .first()
                .ok_or_else(|| anyhow::anyhow!("no pod for {}", session.pod.name))?;
            busy_rss = rss_kib(node.container_pid(pod, "server")?)?;
        }
        let started = Instant::now();
        let kill = http
            .post(format!("{BASE}/session/{}/kill", session.session_id))
            .bearer_auth(&session.token)
            .send()
            .await?;
        anyhow::ensure!(kill.status() == 202, "kill: {}", kill.status());
        let answer: KillResponse = kill.json().await?;
        let url = match answer.websocket_url {
            Some(url) => {
                named += 1;
                url
            }
            None => replacement(&http, &session).await?,
        };
        let (mut replacement, _) = WsClient::connect_hello(&url).await?;
        replacement.ping_pong(1).await?;
        recovery.record(started.elapsed().as_nanos() as u64)?;
        drop((socket, replacement));
        end(&http, &session).await?;
    }
    until_warm(&http, 2).await?;
    let pools = node.pods_of_job(NAMESPACE, "").await?;
    if let Some(pod) = pools.first() {
        idle_rss = rss_kib(node.container_pid(pod, "server")?)?;
    }
    helm(&node, &["uninstall", "demo", "--wait"])?;
    Ok(vec![
        Row::latency_ms(
            format!("real node: cold start, POST /session with an empty pool ({COLD_ROUNDS}×)"),
            &cold,
            "Job → pod scheduled → sandbox + container started → ready → claimed; the original claimed ~60 s",
        ),
        Row::latency_ms(
            format!("real node: POST /session, warm pool ({WARM_ROUNDS}×)"),
            &warm,
            "target p99 < 50 ms; the original claimed < 1 s",
        ),
        Row::latency_ms(
            format!("real node: kill → first pong from the replacement, at the client ({KILL_ROUNDS}×)"),
            &recovery,
            &format!(
                "through the ingress and the edge; the kill's answer named the replacement in {named} of {KILL_ROUNDS}"
            ),
        ),
        Row {
            what: "real node: session pod's server RSS, idle / with a WebSocket open".into(),
            value: format!(
                "{:.1} / {:.1} MiB",
                idle_rss as f64 / 1024.0,
                busy_rss as f64 / 1024.0
            ),
            against: "memory request 30Mi, limit 256Mi".into(),
        },
    ])
}
