//! `bench soak <sessions> <minutes> <kill-every-seconds>` (run by `cargo xtask soak`): the local demo under a
//! steady load for a long time, looking for leaks rather than speed.
//!
//! Each simulated visitor does what the page does — a session, a WebSocket to its pod, pings at 5 Hz, and on a
//! closed socket a poll of `GET /session/{id}` until the replacement pod, then a reconnect. A killer kills one
//! session's pod every few seconds, round robin. At the end every session is deleted and the report compares
//! the provisioner's memory and pod processes with the start: a leak shows as pods beyond the warm target or
//! memory that keeps growing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use common::api::{CreateSessionResponse, SessionState, SessionStatus};
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
    let http = reqwest::Client::new();
    settle(&http, &base).await?;
    let (rss_start, pods_start) = (rss_kib(pid)?, children_of(pid).len());

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut visitors = Vec::new();
    let mut held = Vec::new();
    for _ in 0..sessions {
        let session: CreateSessionResponse = http
            .post(format!("{base}/session"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        held.push((session.session_id.clone(), session.token.clone()));
        visitors.push(tokio::spawn(visit(
            http.clone(),
            base.clone(),
            session,
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
        next += 1;
        let killed = http
            .post(format!("{base}/session/{id}/kill"))
            .bearer_auth(token)
            .send()
            .await?;
        if killed.status() == 202 {
            kills += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for visitor in visitors {
        visitor.await?;
    }
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
            against: "page polls every 250 ms".into(),
        },
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

/// One visitor: ping its pod at 5 Hz; after a kill, find the replacement and reconnect.
async fn visit(
    http: reqwest::Client,
    base: String,
    session: CreateSessionResponse,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut url = session.websocket_url.clone();
    let mut lost_at: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut socket) = WsClient::connect(&url).await else {
            tally.errors.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        if let Some(lost) = lost_at.take() {
            tally.reconnects.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut recovery) = tally.recovery_ms.lock() {
                recovery.push(u64::try_from(lost.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
        }
        let mut seq = 0;
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
                    }
                    Ok(Event::Message(_)) => {}
                    Ok(Event::Closed(_)) | Err(_) => break 'connected,
                },
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        lost_at = Some(Instant::now());
        // As the page does: poll until the session has its replacement pod.
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let status = http
                .get(format!("{base}/session/{}", session.session_id))
                .bearer_auth(&session.token)
                .send()
                .await;
            let Ok(status) = status else { continue };
            let Ok(status) = status.json::<SessionStatus>().await else {
                continue;
            };
            if let (SessionState::Active, Some(next)) = (status.state, status.websocket_url) {
                url = next;
                break;
            }
            if status.state == SessionState::Ended || stop.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}
