//! The smoke check of a deployed demo, through its ingress as the page uses it: a session, its WebSocket
//! through the edge, pings, a kill, the replacement pod (from the kill's answer, or else from polling the
//! session) at once, pings again, the killed pod's connection closed, the end; over plain HTTP or TLS
//! (`https://`, `wss://`: rustls with ring). The `smoke` binary runs it against a URL; the real-node test calls
//! it, through an ingress serving TLS.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::api::{CreateSessionResponse, KillResponse, ProvisionSource, SessionState, SessionStatus};
use hyper::Method;
use testkit::wait::DEPLOYMENT_WAIT as WAIT;
use testkit::ws::WsClient;

/// What one smoke run saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// The first pod.
    pub pod: String,
    /// Whether it came warm or cold.
    pub source: ProvisionSource,
    /// `POST /session` as the provisioner measured it.
    pub provision_ms: f64,
    /// The replacement pod.
    pub replacement: String,
    /// From sending the kill to the first pong from the replacement, at the client.
    pub recovery: Duration,
}

/// Runs the check against `base` (e.g. `http://localhost`), printing each step with `log`.
pub async fn run(base: &str, log: impl FnMut(String)) -> anyhow::Result<Report> {
    run_with(base, None, log).await
}

/// [`run`], trusting the PEM certificates in `extra_roots` besides the system's for `https://` and `wss://`
/// (a deployment with a private CA or a test certificate).
pub async fn run_with(
    base: &str,
    extra_roots: Option<&str>,
    mut log: impl FnMut(String),
) -> anyhow::Result<Report> {
    let base = base.trim_end_matches('/');
    let tls = testkit::tls::client_config(extra_roots)?;
    let http = crate::http::Http::new(tls.clone(), WAIT);
    // The session endpoints, with the session's token once there is one.
    let authorized = |method: Method, path: String, token: String| {
        let http = http.clone();
        async move {
            http.send(method, &format!("{base}{path}"), Some(&token), None)
                .await
        }
    };
    let connect = |url: String, pod: String| {
        let tls = tls.clone();
        async move {
            let (socket, hello) = WsClient::connect_hello_tls(&url, tls).await?;
            ensure!(hello.name == pod, "hello from {}, expected {pod}", hello.name);
            anyhow::Ok(socket.waiting(WAIT))
        }
    };

    let response = http
        .send(
            Method::POST,
            &format!("{base}/session"),
            None,
            Some(&serde_json::json!({"client": "smoke"})),
        )
        .await?;
    ensure!(response.status == 201, "POST /session: {}", response.status);
    let session: CreateSessionResponse = response.json()?;
    log(format!(
        "session {} on pod {} ({:?}, {:.0} ms)",
        session.session_id, session.pod.name, session.source, session.provision_ms
    ));

    let mut socket = connect(session.websocket_url.clone(), session.pod.name.to_string()).await?;
    ping(&mut socket, 3, &mut log).await?;

    let killed_at = Instant::now();
    let kill = authorized(
        Method::POST,
        format!("/session/{}/kill", session.session_id),
        session.token.clone(),
    )
    .await?;
    ensure!(kill.status == 202, "kill: {}", kill.status);
    let answer: KillResponse = kill.json()?;

    let (pod, url) = match (answer.replacement, answer.websocket_url) {
        (Some(pod), Some(url)) => (pod.name.to_string(), url),
        _ => {
            let deadline = Instant::now() + WAIT;
            loop {
                let answer = authorized(
                    Method::GET,
                    format!("/session/{}", session.session_id),
                    session.token.clone(),
                )
                .await?;
                ensure!(answer.status == 200, "GET /session: {}", answer.status);
                let status: SessionStatus = answer.json()?;
                if let (SessionState::Active, Some(pod), Some(url)) =
                    (status.state, status.pod, status.websocket_url)
                    && pod.name != session.pod.name
                {
                    break (pod.name.to_string(), url);
                }
                ensure!(Instant::now() < deadline, "no replacement pod within {WAIT:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    ensure!(
        pod != session.pod.name.as_ref(),
        "the replacement is the killed pod {pod}"
    );
    // As the page does: on to the replacement at once, while the killed pod says goodbye.
    let mut replacement = connect(url, pod.clone()).await?;
    replacement.ping_pong(1).await?;
    let recovery = killed_at.elapsed();
    ping(&mut replacement, 2, &mut log).await?;
    log(format!(
        "recovered on pod {pod} in {:.1} ms",
        recovery.as_secs_f64() * 1000.0
    ));
    socket
        .until_closed()
        .await
        .context("the killed pod's connection stayed open")?;

    let end = authorized(
        Method::DELETE,
        format!("/session/{}", session.session_id),
        session.token.clone(),
    )
    .await?;
    ensure!(end.status == 204, "DELETE /session: {}", end.status);
    Ok(Report {
        pod: session.pod.name.to_string(),
        source: session.source,
        provision_ms: session.provision_ms,
        replacement: pod,
        recovery,
    })
}

async fn ping(socket: &mut WsClient, count: u64, log: &mut impl FnMut(String)) -> anyhow::Result<()> {
    for seq in 1..=count {
        let sent = Instant::now();
        socket.ping_pong(100 + seq).await?;
        log(format!("  pong {seq}: {} µs", sent.elapsed().as_micros()));
    }
    Ok(())
}
