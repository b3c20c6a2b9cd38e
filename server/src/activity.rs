//! What this server has seen from its clients: open connections and the time of the last frame.
//!
//! The provisioner reads it through `GET /activity` to end sessions nobody uses any more. Updates are two atomic
//! stores per frame, so the ping path does not notice them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use common::api::ActivityBody;

use common::runtime::unix_time_ms as now_ms;

/// Connection count and last-activity clock, shared by every connection.
#[derive(Debug)]
pub struct Activity {
    connections: AtomicU32,
    opened_total: AtomicU64,
    last_activity_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            connections: AtomicU32::new(0),
            opened_total: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(now_ms()),
        }
    }
}

impl Activity {
    /// Records that a client sent something (or connected) just now.
    pub fn touch(&self) {
        self.last_activity_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Counts a new connection until the returned guard is dropped.
    pub fn open(&self) -> OpenConnection<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.opened_total.fetch_add(1, Ordering::Relaxed);
        self.touch();
        OpenConnection(self)
    }

    /// The `/activity` report.
    pub fn report(&self) -> ActivityBody {
        ActivityBody {
            connections: self.connections.load(Ordering::Relaxed),
            opened_total: self.opened_total.load(Ordering::Relaxed),
            last_activity_ms: self.last_activity_ms.load(Ordering::Relaxed),
        }
    }
}

/// Keeps one connection counted in [`Activity`] while alive.
pub struct OpenConnection<'a>(&'a Activity);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_connections_and_moves_the_clock_forward() {
        let activity = Activity::default();
        let before = activity.report();
        assert_eq!(before.connections, 0);
        {
            let _a = activity.open();
            let _b = activity.open();
            assert_eq!(activity.report().connections, 2);
        }
        let after = activity.report();
        assert_eq!(after.connections, 0);
        assert_eq!(after.opened_total, 2, "every connection ever opened is counted");
        assert!(after.last_activity_ms >= before.last_activity_ms);
    }
}
