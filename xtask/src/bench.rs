//! `cargo xtask bench`: release builds of the binaries and the page, then every benchmark in `bench/`, which
//! prints a Markdown table (copy it into BENCHMARKS.md with the machine it ran on).

use crate::process;
use crate::{setup, site};

pub fn run() -> anyhow::Result<()> {
    let wasm = setup::ensure_site_tools()?;
    let root = process::workspace_root();
    let dist = root.join("target/bench/dist");
    site::build(&wasm, &dist, "/")?;
    process::build_release(&["server", "provisioner", "bench"])?;
    let bin_dir = root.join("target/release");
    process::run(
        std::process::Command::new(bin_dir.join("bench"))
            .env("BENCH_BIN_DIR", &bin_dir)
            .env("BENCH_DIST", &dist),
    )
}
