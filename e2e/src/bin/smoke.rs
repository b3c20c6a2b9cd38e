//! `smoke <base-url>`: checks a deployed demo end to end through its ingress, as the page would use it — a
//! session, its WebSocket through the edge, pings, a kill, the replacement pod, pings again, the end (see
//! [`e2e::smoke`]).
//!
//! `e2e.yml` runs it against the chart installed in a kind cluster, and the real-node test against the chart on
//! its node; it works against any deployment reachable over plain HTTP, the local demo included
//! (`cargo xtask demo`, then `smoke http://127.0.0.1:8081`). Each wait is bounded by the test kit's deployment
//! wait.
//!
//! ```sh
//! cargo run -p e2e --bin smoke -- http://localhost:8080
//! ```

use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .context("usage: smoke <base-url>, e.g. http://localhost:8080")?;
    e2e::smoke::run(&base, |line| println!("{line}")).await?;
    println!("ok");
    Ok(())
}
