//! Session provisioning with the local backend: `POST /session` latency from a warm pool, from an empty pool
//! (cold), and sessions per second until the cap.

use std::time::{Duration, Instant};

use anyhow::Context;
use common::api::CreateSessionResponse;

use crate::ping::histogram;
use crate::procs;
use crate::{Paths, Row};

const WARM_ROUNDS: usize = 50;
const COLD_ROUNDS: usize = 10;

async fn start(paths: &Paths, warm: &str, max_sessions: &str) -> anyhow::Result<testkit::spawn::Service> {
    let server_bin = paths.bin_dir.join("server");
    let server_bin = server_bin.to_str().context("path")?;
    procs::start(
        &paths.bin_dir.join("provisioner"),
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--warm-pool-size",
            warm,
            "--max-sessions",
            max_sessions,
            "--sessions-per-minute",
            "60000",
            "--session-burst",
            "10000",
            // One benchmark client asks for every session, as fast as it can.
            "--max-sessions-per-client",
            "100000",
            "--requests-per-second",
            "100000",
            "--server-bin",
            server_bin,
        ],
        "provisioner listening",
    )
    .await
}

async fn wait_warm(http: &reqwest::Client, base: &str, warm: u32) -> anyhow::Result<()> {
    let what = format!("{warm} warm pods");
    let every = Duration::from_millis(10);
    testkit::pool::until(http, base, Duration::from_secs(30), every, &what, |pool| {
        pool.warm >= warm
    })
    .await?;
    Ok(())
}

/// Creates and deletes sessions, timing each creation; waits for `warm` pods before each.
pub async fn rounds(
    service: &testkit::spawn::Service,
    rounds: usize,
    warm: u32,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let http = reqwest::Client::new();
    let base = format!("http://{}", service.address);
    let mut hist = histogram();
    for _ in 0..rounds {
        wait_warm(&http, &base, warm).await?;
        let started = Instant::now();
        let response = http.post(format!("{base}/session")).send().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            response.status() == 201,
            "POST /session answered {}",
            response.status()
        );
        hist.record(elapsed.as_nanos() as u64)?;
        let session: CreateSessionResponse = response.json().await?;
        http.delete(format!("{base}/session/{}", session.session_id))
            .bearer_auth(&session.token)
            .send()
            .await?;
    }
    Ok(hist)
}

pub fn ms(nanos: u64) -> String {
    format!("{:.2}", nanos as f64 / 1e6)
}

/// Warm and cold latency, and throughput to the cap.
pub async fn run(paths: &Paths) -> anyhow::Result<Vec<Row>> {
    let warm = start(paths, "2", "20").await?;
    let warm_hist = rounds(&warm, WARM_ROUNDS, 2).await?;
    drop(warm);
    let cold = start(paths, "0", "20").await?;
    let cold_hist = rounds(&cold, COLD_ROUNDS, 0).await?;
    drop(cold);

    let burst = start(paths, "2", "20").await?;
    let http = reqwest::Client::new();
    let base = format!("http://{}", burst.address);
    wait_warm(&http, &base, 2).await?;
    let started = Instant::now();
    let mut created = 0_u32;
    loop {
        let status = http.post(format!("{base}/session")).send().await?.status();
        if status != 201 {
            break;
        }
        created += 1;
    }
    let rate = f64::from(created) / started.elapsed().as_secs_f64();
    Ok(vec![
        Row::latency_ms(
            format!("POST /session, warm pool ({WARM_ROUNDS}×)"),
            &warm_hist,
            "target p99 < 50 ms",
        ),
        Row::latency_ms(
            format!("POST /session, cold start ({COLD_ROUNDS}×)"),
            &cold_hist,
            "a process start plus readiness",
        ),
        Row {
            what: "sessions/s from 0 to the cap of 20 (warm 2, then cold)".into(),
            value: format!("{rate:.1} ({created} sessions)"),
            against: "one client, sequential".into(),
        },
    ])
}
