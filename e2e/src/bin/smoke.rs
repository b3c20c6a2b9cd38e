//! `smoke <base-url>`: checks a deployed demo end to end through its ingress, as the page would use it — a
//! session, its WebSocket through the edge, pings, a kill, the replacement pod, pings again, the end (see
//! [`e2e::smoke`]).
//!
//! `e2e.yml` runs it against the chart installed in a kind cluster, and the real-node test against the chart on
//! its node (through TLS); it works against any deployment, over plain HTTP or TLS, the local demo included
//! (`cargo xtask demo`, then `smoke http://127.0.0.1:8081`). Each wait is bounded by the test kit's deployment
//! wait.
//!
//! ```sh
//! cargo run -p e2e --bin smoke -- http://localhost:8080
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Checks a deployed resume-showcase end to end: a session, pings, a kill, the replacement, the end.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The deployment's public URL: `http://…` or `https://…` (its WebSockets are then `wss://`).
    base_url: String,

    /// PEM certificates to trust besides the system's roots (a private CA, a self-signed test certificate).
    #[arg(long, env = "SMOKE_CA_FILE")]
    ca_file: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let roots = match &args.ca_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("--ca-file {}", path.display()))?)
        }
        None => None,
    };
    e2e::smoke::run_with(&args.base_url, roots.as_deref(), |line| println!("{line}")).await?;
    println!("ok");
    Ok(())
}
