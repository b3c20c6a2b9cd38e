//! `cargo xtask demo`: builds the page and the binaries, then runs the provisioner with the local backend,
//! serving the page and its API on one port (its pods are child processes of the `server` binary), and three
//! shared ping servers beside it, as the original demo's load-balanced servers (the page's second series).
//! With `--watch`, `trunk serve` serves the page on the next port too and rebuilds it on every change: the
//! development loop of the page.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

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
    /// Shared ping servers to start beside the provisioner (0: none; the page then offers no comparison).
    #[arg(long, default_value_t = 3)]
    pub shared_servers: u32,
    /// Also serve the page with `trunk serve` on the next port, rebuilt whenever `app/` or `style/` changes
    /// (open the URL it prints; the API stays on `--port`).
    #[arg(long)]
    pub watch: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    // The demo needs the page's build tools, not the test-only ones (browser, linters).
    let wasm = setup::ensure_site_tools()?;
    let dist = process::workspace_root().join("dist");
    site::build(&wasm, &dist, "/")?;
    process::build_release(&["server", "provisioner"])?;
    let release = process::workspace_root().join("target/release");
    // Held until the end: their standard input closes when this process exits however it exits, and they
    // stop then (`--exit-on-stdin-eof`), so no shared server outlives the demo.
    let shared: Vec<(Child, String)> = (1..=args.shared_servers)
        .map(|n| start_shared(&release.join("server"), n))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "xtask: open http://127.0.0.1:{port}/ (Ctrl-C to stop)\n\
         xtask:   the API is on the same port: curl http://127.0.0.1:{port}/pool",
        port = args.port
    );
    let mut provisioner = Command::new(release.join("provisioner"));
    provisioner
        .args(["--bind", "127.0.0.1"])
        .arg("--port")
        .arg(args.port.to_string())
        .arg("--warm-pool-size")
        .arg(args.warm_pool_size.to_string())
        .arg("--static-dir")
        .arg(&dist);
    for (_, url) in &shared {
        eprintln!("xtask:   shared server: {url}");
        provisioner.arg("--shared-url").arg(url);
    }
    if !args.watch {
        return process::run(&mut provisioner);
    }
    let mut provisioner = provisioner.spawn().context("starting the provisioner")?;
    let page_port = args.port + 1;
    eprintln!(
        "xtask: --watch: open http://127.0.0.1:{page_port}/?api=http://127.0.0.1:{port} (trunk rebuilds the page \
         when app/ or style/ change, and the page reloads)",
        port = args.port
    );
    let watched = trunk_serve(&wasm, page_port);
    let _ = provisioner.kill();
    watched
}

/// `trunk serve` of the page on `port`, with the same toolchain and flags as `site::build`, into a dist of its
/// own (the demo's stays as built).
fn trunk_serve(wasm: &setup::WasmToolchain, port: u16) -> anyhow::Result<()> {
    let root = process::workspace_root();
    let mut command = Command::new("trunk");
    command
        .args([
            "serve",
            "--release",
            "--address",
            "127.0.0.1",
            "--public-url",
            "/",
        ])
        .arg("--port")
        .arg(port.to_string())
        .arg("--dist")
        .arg(root.join("target/watch-dist"))
        .env("CARGO_TARGET_DIR", root.join("target/wasm"))
        .env("TRUNK_OFFLINE", "true");
    for (key, value) in wasm.env() {
        command.env(key, value);
    }
    process::run(&mut command)
}

/// Starts shared server `n` on a port it picks itself; returns it and its WebSocket URL.
fn start_shared(binary: &std::path::Path, n: u32) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--print-port",
            "--exit-on-stdin-eof",
        ])
        .arg("--pod-name")
        .arg(format!("shared-{n}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("the shared server's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .parse()
        .with_context(|| format!("shared server {n} printed {line:?}, not its port"))?;
    Ok((child, format!("ws://127.0.0.1:{port}/ws")))
}
