//! `bench`: measures the ping path, memory, provisioning and the page, each against a baseline measured in the
//! same run, and prints a Markdown table. Run it with `cargo xtask bench` (release builds of every binary).
//!
//! Benchmarks print numbers; they do not pass or fail. Modules: [`procs`] starts the release binaries and reads
//! their memory; [`ping`], [`memory`], [`clients`] (per-client state of 100,000 clients), [`provision`] (local
//! and, in [`provision_k8s`], Kubernetes), [`real_node`] (the chart on real containers) and [`page`] are the
//! measurements; [`soak`] is the long
//! leak hunt of `cargo xtask soak` (not part of `bench` without arguments).

mod clients;
mod memory;
mod page;
mod ping;
mod procs;
mod provision;
mod provision_k8s;
mod real_node;
mod soak;

use std::path::PathBuf;
use std::time::Duration;

/// One line of the report.
pub struct Row {
    /// What was measured.
    pub what: String,
    /// The result.
    pub value: String,
    /// The baseline or target it is compared with.
    pub against: String,
}

impl Row {
    /// "`what`: p50 / p99 ms" of a latency histogram in nanoseconds.
    pub fn latency_ms(what: String, hist: &hdrhistogram::Histogram<u64>, against: &str) -> Self {
        Self {
            what: format!("{what}: p50 / p99 ms"),
            value: format!(
                "{} / {}",
                provision::ms(hist.value_at_quantile(0.5)),
                provision::ms(hist.value_at_quantile(0.99))
            ),
            against: against.into(),
        }
    }
}

/// Where the release binaries and the built site are (set by `cargo xtask bench`).
pub struct Paths {
    /// Directory with `server` and `provisioner`.
    pub bin_dir: PathBuf,
    /// The built site, if any.
    pub dist: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let only: Vec<String> = std::env::args().skip(1).collect();
    if only.first().map(String::as_str) == Some("echo-server") {
        return ping::echo_server();
    }
    let soak = only.first().map(String::as_str) == Some("soak");
    // `bench memory page` runs just those; no argument runs everything.
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let exe = std::env::current_exe()?;
    let paths = Paths {
        bin_dir: std::env::var_os("BENCH_BIN_DIR")
            .map(PathBuf::from)
            .or_else(|| exe.parent().map(PathBuf::from))
            .unwrap_or_default(),
        dist: std::env::var_os("BENCH_DIST").map(PathBuf::from),
    };
    // 10,000 connections need 20,000 descriptors on this side and the server's; children inherit the limit.
    let limit = rlimit::increase_nofile_limit(65_536)?;
    eprintln!("bench: open-file limit {limit}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    runtime.block_on(async {
        if soak {
            // `soak <sessions> <minutes> <kill-every-seconds>`
            let number = |i: usize, default: u64| only.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
            let sessions = u32::try_from(number(1, 20)).unwrap_or(20);
            rows.extend(
                soak::run(
                    &paths,
                    sessions,
                    number(2, 10),
                    Duration::from_secs(number(3, 30)),
                )
                .await?,
            );
            return anyhow::Ok(());
        }
        if wanted("ping") {
            rows.extend(ping::run(&paths).await?);
        }
        if wanted("memory") {
            rows.extend(memory::run(&paths).await?);
        }
        if wanted("clients") {
            rows.extend(clients::run(&paths).await?);
        }
        if wanted("provision") {
            rows.extend(provision::run(&paths).await?);
        }
        if wanted("provision-k8s") {
            rows.extend(provision_k8s::run(&paths).await?);
        }
        if wanted("real-node") {
            rows.extend(real_node::run().await?);
        }
        anyhow::Ok(())
    })?;
    if wanted("page") && !soak {
        rows.extend(page::run(&paths)?);
    }
    println!("| measurement | result | baseline / target |");
    println!("|---|---|---|");
    for row in rows {
        println!("| {} | {} | {} |", row.what, row.value, row.against);
    }
    Ok(())
}
