//! `smoke <base-url>`: checks a deployed demo end to end through its ingress, as the page would use it — a
//! session, its WebSocket through the edge, pings, a kill, the replacement pod, pings again, the end.
//!
//! `e2e.yml` runs it against the chart installed in a kind cluster; it works against any deployment reachable
//! over plain HTTP, the local demo included (`cargo xtask demo`, then `smoke http://127.0.0.1:8081`).
//!
//! ```sh
//! cargo run -p e2e --bin smoke -- http://localhost:8080
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::api::{CreateSessionResponse, SessionState, SessionStatus};
use common::protocol::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Bound on each wait.
const WAIT: Duration = Duration::from_secs(60);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
    wait_for_close(&mut socket).await?;

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

/// Connects to `websocket_url` and checks the hello names `pod`.
async fn connect(url: &str, pod: &str) -> anyhow::Result<Socket> {
    let (mut socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connect to {url}"))?;
    match next_message(&mut socket).await? {
        ServerMessage::Hello { pod: hello, .. } => {
            ensure!(hello.name == pod, "hello from {}, expected {pod}", hello.name);
        }
        other => bail!("expected hello, got {other:?}"),
    }
    Ok(socket)
}

async fn ping(socket: &mut Socket, count: u64) -> anyhow::Result<()> {
    for seq in 1..=count {
        let sent = Instant::now();
        let ping = ClientMessage::Ping { seq, sent_at: 0.0 }.to_json();
        socket.send(Message::text(ping)).await?;
        match next_message(socket).await? {
            ServerMessage::Pong { seq: got, .. } if got == seq => {
                println!("  pong {seq}: {} µs", sent.elapsed().as_micros());
            }
            other => bail!("expected pong {seq}, got {other:?}"),
        }
    }
    Ok(())
}

async fn next_message(socket: &mut Socket) -> anyhow::Result<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .context("no message in time")?
            .context("connection closed")??;
        match frame {
            Message::Text(text) => return ServerMessage::parse(&text).map_err(|e| anyhow::anyhow!("{e:?}")),
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

async fn wait_for_close(socket: &mut Socket) -> anyhow::Result<()> {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Err(_) => bail!("the killed pod's connection stayed open"),
            Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return Ok(()),
            Ok(Some(Ok(_))) => {}
        }
    }
}
