//! Starting the release binaries for a benchmark and reading their memory.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child process that is killed when dropped, with the address it listens on.
pub struct Service {
    /// The process.
    pub child: Child,
    /// `host:port`.
    pub address: String,
}

impl Service {
    /// Starts `binary` with `args` and waits for its JSON "listening" log line (`message` = `ready_message`).
    pub async fn start(binary: &Path, args: &[&str], ready_message: &str) -> anyhow::Result<Self> {
        Self::start_with_env(binary, args, &[], ready_message).await
    }

    /// [`Service::start`] with extra environment variables.
    pub async fn start_with_env(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
        ready_message: &str,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line)
                    && log["message"] == ready_message
                    && let Some(address) = log["address"].as_str()
                {
                    return Ok(address.to_owned());
                }
            }
            bail!("{} exited before listening", binary.display())
        })
        .await
        .context("timed out waiting for the service to listen")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, address })
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.child.id().context("process gone")?)
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS")
}

/// Formats microseconds from a histogram recorded in nanoseconds.
pub fn us(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1000.0)
}
