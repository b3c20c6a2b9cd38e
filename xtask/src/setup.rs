//! Installs what the checks need when it is missing, and skips what is already there.
//!
//! Everything is cached outside the repository (rustup's components, `~/.cargo/bin`), so a second run costs
//! nothing. Later pieces of the project (the WASM toolchain, Chromium, Kubernetes binaries) add their steps here.

use std::process::Command;

use crate::process::{self, cargo};

/// Ensures every tool of `cargo xtask test` is present.
pub fn ensure_all() -> anyhow::Result<()> {
    ensure_rust_components()?;
    Ok(())
}

/// rustfmt and clippy come with rustup's default profile, but minimal installs lack them.
fn ensure_rust_components() -> anyhow::Result<()> {
    let has = |sub: &str| {
        cargo()
            .args([sub, "--version"])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    let missing: Vec<&str> = [("fmt", "rustfmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(sub, _)| !has(sub))
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !process::available("rustup") {
        anyhow::bail!("cargo lacks {missing:?} and rustup is not installed to add them");
    }
    process::run(Command::new("rustup").args(["component", "add"]).args(&missing))
}
