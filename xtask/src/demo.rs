//! `cargo xtask demo`: builds the binaries in release mode and runs the provisioner with the local backend
//! (its pods are child processes of the `server` binary built next to it).

use crate::process::{self, cargo};

/// Flags of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Port of the provisioner.
    #[arg(long, default_value_t = 8081)]
    pub port: u16,
    /// Warm pods to keep ready.
    #[arg(long, default_value_t = 2)]
    pub warm_pool_size: u32,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    process::run(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "server",
        "-p",
        "provisioner",
    ]))?;
    let binary = process::workspace_root().join("target/release/provisioner");
    eprintln!(
        "xtask: provisioner on http://127.0.0.1:{port} (Ctrl-C to stop)\n\
         xtask:   curl -X POST http://127.0.0.1:{port}/session     # a session with its own pod\n\
         xtask:   curl http://127.0.0.1:{port}/pool                # warm / starting / assigned",
        port = args.port
    );
    process::run(
        std::process::Command::new(binary)
            .args(["--bind", "127.0.0.1"])
            .arg("--port")
            .arg(args.port.to_string())
            .arg("--warm-pool-size")
            .arg(args.warm_pool_size.to_string()),
    )
}
