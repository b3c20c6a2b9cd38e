//! Starting a service binary (the ping server, the provisioner, a benchmark's echo server) and waiting until it
//! listens: the services log `{"message": "... listening", "address": "host:port"}` as JSON, and this waits for
//! that line (bounded), then keeps draining the log so the child never blocks on a full pipe. The child is
//! killed when the [`Service`] is dropped.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::wait::within;

/// A running service process and the address it listens on.
pub struct Service {
    /// The process (killed on drop).
    pub child: Child,
    /// `host:port` from its "listening" line.
    pub address: String,
}

impl Service {
    /// Spawns `command` with JSON logs on stderr and waits, at most `bound`, for its log line whose `message`
    /// is `ready_message`. Error-level lines seen on the way are passed to stderr, so a failing start says why.
    pub async fn start(mut command: Command, ready_message: &str, bound: Duration) -> anyhow::Result<Self> {
        let mut child = command
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the service")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let address = within(bound, ready_message, async {
            while let Some(line) = lines.next_line().await? {
                let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if log["message"] == ready_message
                    && let Some(address) = log["address"].as_str()
                {
                    return Ok(address.to_owned());
                }
                if log["level"] == "ERROR" {
                    eprintln!("{line}");
                }
            }
            bail!("the process exited before logging {ready_message:?}")
        })
        .await??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, address })
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has exited")
    }
}
