//! `smoke <base-url>`: checks a deployed demo end to end through its ingress, as the page would use it — a
//! session, its WebSocket through the edge, pings, a kill, the replacement pod, pings again, the end.
//!
//! `e2e.yml` runs it against the chart installed in a kind cluster; it works against any deployment reachable
//! over plain HTTP, the local demo included (`cargo xtask demo`, then `smoke http://127.0.0.1:8081`). Each wait
//! is bounded by the test kit's deployment wait.
//!
//! ```sh
//! cargo run -p e2e --bin smoke -- http://localhost:8080
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::api::{CreateSessionResponse, SessionState, SessionStatus};
use testkit::wait::DEPLOYMENT_WAIT as WAIT;
use testkit::ws::WsClient;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .context("usage: smoke <base-url>, e.g. http://localhost:8080")?;
    let base = base.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().timeout(WAIT).build()?;

    let response = http
        .post(format!("{base}/session"))
        .json(&serde_json::json!({"client": "smoke"}))
        .send()
        .await?;
    ensure!(response.status() == 201, "POST /session: {}", response.status());
    let session: CreateSessionResponse = response.json().await?;
    println!(
        "session {} on pod {} ({:?}, {:.0} ms)",
        session.session_id, session.pod.name, session.source, session.provision_ms
    );

    let mut socket = connect(&session.websocket_url, &session.pod.name).await?;
    ping(&mut socket, 3).await?;

    let killed_at = Instant::now();
    let kill = http
        .post(format!("{base}/session/{}/kill", session.session_id))
        .bearer_auth(&session.token)
        .send()
        .await?;
    ensure!(kill.status() == 202, "kill: {}", kill.status());
    socket
        .until_closed()
        .await
        .context("the killed pod's connection stayed open")?;

    let deadline = Instant::now() + WAIT;
    let (pod, url) = loop {
        let status: SessionStatus = http
            .get(format!("{base}/session/{}", session.session_id))
            .bearer_auth(&session.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if let (SessionState::Active, Some(pod), Some(url)) = (status.state, status.pod, status.websocket_url)
            && pod.name != session.pod.name
        {
            break (pod.name, url);
        }
        ensure!(Instant::now() < deadline, "no replacement pod within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut socket = connect(&url, &pod).await?;
    ping(&mut socket, 3).await?;
    println!("recovered on pod {pod} in {} ms", killed_at.elapsed().as_millis());

    let end = http
        .delete(format!("{base}/session/{}", session.session_id))
        .bearer_auth(&session.token)
        .send()
        .await?;
    ensure!(end.status() == 204, "DELETE /session: {}", end.status());
    println!("ok");
    Ok(())
}

/// Connects to `url` and checks the hello names `pod`.
async fn connect(url: &str, pod: &str) -> anyhow::Result<WsClient> {
    let (socket, hello) = WsClient::connect_hello(url).await?;
    ensure!(hello.name == pod, "hello from {}, expected {pod}", hello.name);
    Ok(socket.waiting(WAIT))
}

async fn ping(socket: &mut WsClient, count: u64) -> anyhow::Result<()> {
    for seq in 1..=count {
        let sent = Instant::now();
        socket.ping_pong(seq).await?;
        println!("  pong {seq}: {} µs", sent.elapsed().as_micros());
    }
    Ok(())
}
