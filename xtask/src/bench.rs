//! `cargo xtask bench`: release builds of the binaries, the page and (for the real node) the images, then every
//! benchmark in `bench/`, which prints a Markdown table (copy it into BENCHMARKS.md with the machine it ran on).

use crate::process;
use crate::{setup, site};

pub fn run(only: &[String]) -> anyhow::Result<()> {
    let wasm = setup::ensure_site_tools()?;
    let root = process::workspace_root();
    let dist = root.join("target/bench/dist");
    site::build(&wasm, &dist, "/")?;
    let k8s_bin = crate::cluster::ensure_binaries()?;
    // The real node runs the images: both binaries (static musl builds) and the pod sandbox.
    if only.is_empty() || only.iter().any(|o| o == "real-node") {
        crate::image::build()?;
        crate::image::pause(&k8s_bin)?;
        crate::traefik::ensure(&k8s_bin)?;
    }
    process::build_release(&["server", "provisioner", "bench"])?;
    let bin_dir = root.join("target/release");
    process::run(
        std::process::Command::new(bin_dir.join("bench"))
            .args(only)
            .env("BENCH_BIN_DIR", &bin_dir)
            .env("BENCH_DIST", &dist)
            .env("SHOWCASE_K8S_BIN", k8s_bin)
            .env("SHOWCASE_IMAGES", root.join("target/images")),
    )
}

/// `cargo xtask soak`: the long leak hunt (not in CI).
#[derive(clap::Args)]
pub struct SoakArgs {
    /// Simulated visitors, each holding a session and pinging at 5 Hz.
    #[arg(long, default_value_t = 20)]
    pub sessions: u32,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Kill one session's pod this often (seconds), round robin.
    #[arg(long, default_value_t = 30)]
    pub kill_every: u64,
}

pub fn soak(args: &SoakArgs) -> anyhow::Result<()> {
    process::build_release(&["server", "provisioner", "bench"])?;
    let bin_dir = process::workspace_root().join("target/release");
    process::run(
        std::process::Command::new(bin_dir.join("bench"))
            .args([
                "soak".to_owned(),
                args.sessions.to_string(),
                args.minutes.to_string(),
                args.kill_every.to_string(),
            ])
            .env("BENCH_BIN_DIR", &bin_dir),
    )
}
