//! Memory under many clients: the provisioner's per-client rate-limit state for 100,000 distinct clients (each
//! a distinct `X-Forwarded-For` entry through a trusted proxy, the test itself), and after their window has
//! passed and the limiters have been pruned. Target: at most 50 MB more resident memory, and back down.

use std::time::Duration;

use anyhow::Context;

use crate::procs;
use crate::{Paths, Row};

const CLIENTS: u32 = 100_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 64;

/// RSS before, with 100,000 clients' state, and after pruning.
pub async fn run(paths: &Paths) -> anyhow::Result<Vec<Row>> {
    let server_bin = paths.bin_dir.join("server");
    let provisioner = procs::start(
        &paths.bin_dir.join("provisioner"),
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--warm-pool-size",
            "0",
            "--max-sessions",
            "0",
            "--trusted-proxies",
            "127.0.0.1",
            "--server-bin",
            server_bin.to_str().context("path")?,
        ],
        "provisioner listening",
    )
    .await?;
    let url = format!("http://{}/session", provisioner.address);
    let http = reqwest::Client::new();
    settle().await;
    let before = procs::rss_kib(&provisioner)?;
    // Each client asks once and is refused (the demo has no slot): what stays behind is its limiter state.
    let mut refused = 0_u32;
    for chunk in (0..CLIENTS).collect::<Vec<_>>().chunks(CONCURRENCY) {
        let requests = chunk.iter().map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            http.post(&url)
                .header("x-forwarded-for", format!("10.{a}.{b}.{c}"))
                .send()
        });
        for response in futures_util::future::join_all(requests).await {
            if response?.status() == 429 {
                refused += 1;
            }
        }
    }
    anyhow::ensure!(refused == CLIENTS, "{refused} of {CLIENTS} refused; expected all");
    let loaded = procs::rss_kib(&provisioner)?;
    // The session limiter's window is 3 s per request at 20/min; the limiters are pruned every 10 s.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = procs::rss_kib(&provisioner)?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(vec![Row {
        what: format!("provisioner RSS with {CLIENTS} distinct clients' rate-limit state, then pruned"),
        value: format!(
            "{:.1} → {:.1} MiB (+{:.1}), then {:.1} MiB",
            mib(before),
            mib(loaded),
            mib(loaded.saturating_sub(before)),
            mib(after)
        ),
        against: "target: at most +50 MB, and back down".into(),
    }])
}

/// Lets allocators and the kernel's accounting settle before reading RSS (a measurement pause, not
/// synchronisation: nothing is waited for).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
