//! `cargo xtask demo`: builds the page and the binaries, then runs the provisioner with the local backend,
//! serving the page and its API on one port (its pods are child processes of the `server` binary).

use crate::process;
use crate::{setup, site};

/// Flags of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Port of the page and the API.
    #[arg(long, default_value_t = 8081)]
    pub port: u16,
    /// Warm pods to keep ready.
    #[arg(long, default_value_t = 2)]
    pub warm_pool_size: u32,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    // The demo needs the page's build tools, not the test-only ones (browser, linters).
    let wasm = setup::ensure_site_tools()?;
    let dist = process::workspace_root().join("dist");
    site::build(&wasm, &dist, "/")?;
    process::build_release(&["server", "provisioner"])?;
    let binary = process::workspace_root().join("target/release/provisioner");
    eprintln!(
        "xtask: open http://127.0.0.1:{port}/ (Ctrl-C to stop)\n\
         xtask:   the API is on the same port: curl http://127.0.0.1:{port}/pool",
        port = args.port
    );
    process::run(
        std::process::Command::new(binary)
            .args(["--bind", "127.0.0.1"])
            .arg("--port")
            .arg(args.port.to_string())
            .arg("--warm-pool-size")
            .arg(args.warm_pool_size.to_string())
            .arg("--static-dir")
            .arg(&dist),
    )
}
