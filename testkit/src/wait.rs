//! The one wait policy of the tests, benchmarks and tools.
//!
//! Every wait is on an event (a message, a close frame, a log line, a process exit, a changed pool) and every
//! wait is bounded, so a broken build fails with a sentence instead of hanging:
//!
//! - [`WAIT`] bounds each single wait in the test suite. It is far above what anything takes on a loaded
//!   2-core CI machine (the slowest event waited on, a cold pod on the real control plane, takes about 2 s), so
//!   reaching it means something is broken, never that the machine was slow.
//! - [`DEPLOYMENT_WAIT`] bounds each wait of the tools that talk to a real deployment over the network (the
//!   `smoke` check, the benchmarks), where a cold start may pull an image first.
//!
//! [`within`] applies a bound and names what was awaited when it runs out.

use std::future::Future;
use std::time::Duration;

/// Bound on every single wait in the test suite.
pub const WAIT: Duration = Duration::from_secs(20);

/// Bound on every single wait against a real deployment.
pub const DEPLOYMENT_WAIT: Duration = Duration::from_secs(60);

/// Awaits `future` for at most `bound`; past it, an error that says what was awaited.
pub async fn within<T>(bound: Duration, what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(bound, future)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {bound:?} waiting for {what}"))
}
