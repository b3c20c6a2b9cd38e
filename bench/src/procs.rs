//! Starting the release binaries for a benchmark, with the test kit's service spawner (bounded by its
//! deployment wait), reading their memory, and formatting times.

use std::ffi::OsStr;
use std::path::Path;

use testkit::spawn::Service;
use testkit::wait::DEPLOYMENT_WAIT;
use tokio::process::Command;

/// Starts `binary` with `args` and waits for its JSON "listening" log line (`message` = `ready_message`).
pub async fn start(binary: &Path, args: &[&str], ready_message: &str) -> anyhow::Result<Service> {
    start_with_env(binary, args, &[], ready_message).await
}

/// [`start`] with extra environment variables.
pub async fn start_with_env(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &OsStr)],
    ready_message: &str,
) -> anyhow::Result<Service> {
    let mut command = Command::new(binary);
    command.args(args).envs(env.iter().copied());
    Service::start(command, ready_message, DEPLOYMENT_WAIT).await
}

/// Resident memory of a running service, in KiB.
pub fn rss_kib(service: &Service) -> anyhow::Result<u64> {
    testkit::proc::rss_kib(service.pid()?)
}

/// Formats microseconds from a histogram recorded in nanoseconds.
pub fn us(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1000.0)
}
