//! `bench soak <sessions> <minutes> <kill-every-seconds>` (run by `cargo xtask soak`): the local demo under a
//! steady load for a long time, looking for leaks rather than speed.
//!
//! Each simulated visitor does what the page does — a session, a WebSocket to its pod, pings at 5 Hz (the first
//! at once), and after a kill a reconnect to the replacement named in the kill's answer; only when a socket
//! closes without a kill, or the answer names no replacement, a poll of `GET /session/{id}` each second (the
//! page's fallback). A killer kills one session's pod every few seconds, round robin, and hands the answer to
//! that visitor, as the page's kill button does. Recovery is kill request → first pong from the replacement. At the end every session is deleted and the report compares
//! the provisioner's memory and pod processes with the start: a leak shows as pods beyond the warm target or
//! memory that keeps growing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use common::api::{CreateSessionResponse, KillResponse, SessionState, SessionStatus};
use common::protocol::ServerMessage;
use testkit::ws::{Event, WsClient};

use crate::procs;
use crate::{Paths, Row};
use testkit::proc::{children_of, rss_kib};

const WARM: u32 = 2;

/// Counters shared by the visitors.
#[derive(Default)]
struct Tally {
    pongs: AtomicU64,
    reconnects: AtomicU64,
    errors: AtomicU64,
    recovery_ms: std::sync::Mutex<Vec<u64>>,
}

/// Runs the soak and returns its report.
pub async fn run(
    paths: &Paths,
    sessions: u32,
    minutes: u64,
    kill_every: Duration,
) -> anyhow::Result<Vec<Row>> {
    let server_bin = paths.bin_dir.join("server");
    let max = sessions.to_string();
    let provisioner = procs::start(
        &paths.bin_dir.join("provisioner"),
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--warm-pool-size",
            "2",
            "--max-sessions",
            &max,
            "--sessions-per-minute",
            "60000",
            "--session-burst",
            "10000",
            // One benchmark client asks for every session, as fast as it can.
            "--max-sessions-per-client",
            "100000",
            "--requests-per-second",
            "100000",
            "--kill-cooldown",
            "1s",
            "--server-bin",
            server_bin.to_str().context("path")?,
        ],
        "provisioner listening",
    )
    .await?;
    let pid = provisioner.pid()?;
    let base = format!("http://{}", provisioner.address);
    // Idle connections are dropped before the provisioner's own idle timeout could close one as it is reused.
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    settle(&http, &base).await?;
    let (rss_start, pods_start) = (rss_kib(pid)?, children_of(pid).len());

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut visitors = Vec::new();
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..sessions {
        let session: CreateSessionResponse = http
            .post(format!("{base}/session"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        held.push((session.session_id.clone(), session.token.clone()));
        let (answer, kills) = tokio::sync::mpsc::unbounded_channel();
        answers.push(answer);
        visitors.push(tokio::spawn(visit(
            http.clone(),
            base.clone(),
            session,
            kills,
            tally.clone(),
            stop.clone(),
        )));
    }
    eprintln!("soak: {sessions} sessions for {minutes} min, a kill every {kill_every:?}");
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let mut kills = 0_u64;
    let mut next = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(kill_every.min(deadline.saturating_duration_since(Instant::now()))).await;
        let (id, token) = &held[next % held.len()];
        let answer = &answers[next % held.len()];
        next += 1;
        let clicked = Instant::now();
        let killed = http
            .post(format!("{base}/session/{id}/kill"))
            .bearer_auth(token)
            .send()
            .await;
        let Ok(killed) = killed else {
            tally.errors.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        if killed.status() == 202 {
            kills += 1;
            let url = killed
                .json::<KillResponse>()
                .await
                .ok()
                .and_then(|k| k.websocket_url);
            let _ = answer.send(Kill { clicked, url });
        }
    }
    stop.store(true, Ordering::SeqCst);
    for visitor in visitors {
        visitor.await?;
    }
    let normal = what_metrics_say(&base, minutes).await?;
    for (id, token) in &held {
        http.delete(format!("{base}/session/{id}"))
            .bearer_auth(token)
            .send()
            .await?;
    }
    settle(&http, &base).await?;
    let (rss_end, pods_end) = (rss_kib(pid)?, children_of(pid).len());

    let mut recovery = tally.recovery_ms.lock().map(|r| r.clone()).unwrap_or_default();
    recovery.sort_unstable();
    let percentile = |p: usize| {
        recovery
            .get(recovery.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    Ok(vec![
        Row {
            what: "soak: pongs / reconnects / kills / errors".into(),
            value: format!(
                "{} / {} / {kills} / {}",
                tally.pongs.load(Ordering::SeqCst),
                tally.reconnects.load(Ordering::SeqCst),
                tally.errors.load(Ordering::SeqCst)
            ),
            against: format!("{sessions} sessions, {minutes} min"),
        },
        Row {
            what: "soak: recovery after a kill, p50 / p99".into(),
            value: format!("{} ms / {} ms", percentile(50), percentile(99)),
            against: "target p50 ≤ 50 ms (kill request → first pong from the replacement)".into(),
        },
        normal,
        Row {
            what: "soak: pod processes, start → end".into(),
            value: format!("{pods_start} → {pods_end}"),
            against: format!("{WARM} warm (more is a leak)"),
        },
        Row {
            what: "soak: provisioner RSS, start → end".into(),
            value: format!("{rss_start} KiB → {rss_end} KiB"),
            against: "flat (growth is a leak)".into(),
        },
    ])
}

/// What the provisioner's own `/metrics` said of the run: what "normal" looks like to an operator
/// (docs/OPERATIONS.md quotes it).
async fn what_metrics_say(base: &str, minutes: u64) -> anyhow::Result<Row> {
    use testkit::metrics::{quantile, scrape, sum};
    let m = scrape(&format!("{base}/metrics")).await?;
    let created = sum(&m, "provisioner_sessions_created", &[]);
    let warm = sum(&m, "provisioner_sessions_created", &[("source", "warm")]);
    let recovered = sum(&m, "provisioner_recoveries", &[]);
    let warm_recovered = sum(&m, "provisioner_recoveries", &[("source", "warm")]);
    let ms = |q| {
        quantile(&m, "provisioner_recovery_seconds", &[("source", "warm")], q)
            .map_or("-".to_owned(), |s| format!("{:.1}", s * 1000.0))
    };
    let refusals = sum(&m, "provisioner_rejections", &[]) / minutes.max(1) as f64;
    let errors = sum(
        &m,
        "provisioner_http_request_duration_seconds",
        &[("status", "5xx")],
    );
    Ok(Row {
        what: "soak: /metrics — warm hits, warm recoveries, recovery p50 / p99, refusals per min, 5xx".into(),
        value: format!(
            "{warm}/{created}, {warm_recovered}/{recovered}, {} / {} ms, {refusals:.1}, {errors}",
            ms(0.5),
            ms(0.99)
        ),
        against: "the provisioner's view: kill accepted → replacement assigned".into(),
    })
}

/// Waits until the pool is back to its warm target with nothing assigned or starting.
async fn settle(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let what = "the pool back to its warm target with nothing assigned or starting";
    let every = Duration::from_millis(100);
    testkit::pool::until(http, base, Duration::from_secs(60), every, what, |pool| {
        pool.warm == WARM && pool.assigned == 0 && pool.starting == 0
    })
    .await?;
    Ok(())
}

/// A kill of a visitor's pod, as its answer came back.
struct Kill {
    /// When the kill was requested.
    clicked: Instant,
    /// The replacement's WebSocket URL, when the answer named one.
    url: Option<String>,
}

/// How long a visitor whose socket closed waits for a kill's answer before asking the provisioner itself.
const FALLBACK: Duration = Duration::from_secs(1);

/// One visitor: ping its pod at 5 Hz; after a kill, reconnect to the replacement the answer names.
async fn visit(
    http: reqwest::Client,
    base: String,
    session: CreateSessionResponse,
    mut kills: tokio::sync::mpsc::UnboundedReceiver<Kill>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut url = session.websocket_url.clone();
    // When the outage being recovered from began (the kill request, else the socket's close).
    let mut outage: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut socket) = WsClient::connect(&url).await else {
            tally.errors.fetch_add(1, Ordering::SeqCst);
            url = match next_url(&http, &base, &session, &mut kills, &mut outage, &stop).await {
                Some(url) => url,
                None => return,
            };
            continue;
        };
        if outage.is_some() {
            tally.reconnects.fetch_add(1, Ordering::SeqCst);
        }
        let mut seq = 0;
        // The first tick is at once: the first ping goes out as soon as the socket is open.
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        'connected: while !stop.load(Ordering::SeqCst) {
            tokio::select! {
                _ = ticker.tick() => {
                    seq += 1;
                    if socket.ping(seq, 0.0).await.is_err() { break 'connected; }
                }
                event = socket.next_event() => match event {
                    Ok(Event::Message(ServerMessage::Pong { .. })) => {
                        tally.pongs.fetch_add(1, Ordering::SeqCst);
                        if let Some(since) = outage.take()
                            && let Ok(mut recovery) = tally.recovery_ms.lock()
                        {
                            recovery.push(u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX));
                        }
                    }
                    Ok(Event::Message(_)) => {}
                    Ok(Event::Closed(_)) | Err(_) => break 'connected,
                },
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        outage.get_or_insert_with(Instant::now);
        url = match next_url(&http, &base, &session, &mut kills, &mut outage, &stop).await {
            Some(url) => url,
            None => return,
        };
    }
}

/// The URL to reconnect to: the kill's answer's, or, when none comes within [`FALLBACK`] or it names no
/// replacement, what `GET /session/{id}` says (polled each [`FALLBACK`]); `None` when the session is over.
async fn next_url(
    http: &reqwest::Client,
    base: &str,
    session: &CreateSessionResponse,
    kills: &mut tokio::sync::mpsc::UnboundedReceiver<Kill>,
    outage: &mut Option<Instant>,
    stop: &AtomicBool,
) -> Option<String> {
    loop {
        if let Ok(Some(kill)) = tokio::time::timeout(FALLBACK, kills.recv()).await {
            *outage = Some(kill.clicked);
            if let Some(url) = kill.url {
                return Some(url);
            }
        }
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let status = http
            .get(format!("{base}/session/{}", session.session_id))
            .bearer_auth(&session.token)
            .send()
            .await;
        let Ok(status) = status else { continue };
        let Ok(status) = status.json::<SessionStatus>().await else {
            continue;
        };
        match (status.state, status.websocket_url) {
            (SessionState::Active, Some(next)) => return Some(next),
            (SessionState::Ended, _) => return None,
            _ => {}
        }
    }
}
