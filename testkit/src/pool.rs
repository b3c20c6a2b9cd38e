//! Waiting on a provisioner's pool from outside, as a browser would: `GET /pool` until a condition holds.
//!
//! The pool changes on its own (pods start, get replaced, refill) and the API has no way to subscribe to it, so
//! the one honest wait is to poll at a short interval with a deadline.

use std::time::Duration;

use anyhow::Context;
use common::api::PoolStatus;

/// Polls `GET {base}/pool` every `every` until `condition` holds and returns that status; fails with `what`
/// and the last status seen once `within` has passed.
pub async fn until(
    http: &reqwest::Client,
    base: &str,
    within: Duration,
    every: Duration,
    what: &str,
    condition: impl Fn(&PoolStatus) -> bool,
) -> anyhow::Result<PoolStatus> {
    let deadline = tokio::time::Instant::now() + within;
    let url = format!("{base}/pool");
    loop {
        let pool: PoolStatus = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .json()
            .await
            .with_context(|| format!("GET {url}: body"))?;
        if condition(&pool) {
            return Ok(pool);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}: {pool:?}"
        );
        tokio::time::sleep(every).await;
    }
}
