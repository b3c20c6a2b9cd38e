//! `cargo xtask demo`: runs the demo locally.

use crate::process::{self, cargo};

/// Flags of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Port to serve on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    process::run(cargo().args(["build", "--release", "--locked", "-p", "server"]))?;
    eprintln!(
        "xtask: ping server on ws://127.0.0.1:{}/ws (Ctrl-C to stop)",
        args.port
    );
    process::run(
        cargo()
            .args([
                "run",
                "--release",
                "--locked",
                "-p",
                "server",
                "--",
                "--bind",
                "127.0.0.1",
            ])
            .arg("--port")
            .arg(args.port.to_string()),
    )
}
