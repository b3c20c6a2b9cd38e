//! Builds the web page with Trunk (offline, with the tools `setup` installed) and reports its gzipped size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::process;
use crate::setup::{WasmToolchain, locked_version};

/// Builds `app/` into `dist` (relative to the workspace root) for serving under `public_url`.
pub fn build(wasm: &WasmToolchain, dist: &Path, public_url: &str) -> anyhow::Result<()> {
    check_trunk_config()?;
    let target_dir = process::workspace_root().join("target/wasm");
    // Build (and fetch std's dependencies) with cargo first: Trunk runs cargo offline, and its error output is
    // terse. The second build inside Trunk is then a no-op.
    let mut cargo = process::cargo();
    cargo
        .args([
            "build",
            "--locked",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "wasm-release",
            "-p",
            "app",
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
    for (key, value) in wasm.env() {
        cargo.env(key, value);
    }
    process::run(&mut cargo)?;
    let mut command = Command::new("trunk");
    command
        .args(["build", "--release", "--public-url", public_url])
        .arg("--dist")
        .arg(dist)
        // Keep the wasm build's artefacts apart from the native ones (different toolchain and flags).
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("TRUNK_OFFLINE", "true");
    for (key, value) in wasm.env() {
        command.env(key, value);
    }
    process::run(&mut command)?;
    let (raw, gzipped) = size(dist)?;
    eprintln!(
        "xtask: site built in {}: {:.1} KB of wasm + js + css, {:.1} KB gzipped",
        dist.display(),
        raw as f64 / 1024.0,
        gzipped as f64 / 1024.0
    );
    Ok(())
}

/// Flags of `cargo xtask site`.
#[derive(clap::Args)]
pub struct Args {
    /// Output directory.
    #[arg(long, default_value = "dist")]
    pub dist: std::path::PathBuf,
    /// Absolute URL path the site is served under, with both slashes (`/<repo>/` for a GitHub Pages project).
    #[arg(long, default_value = "/")]
    pub public_url: String,
    /// The provisioner's public URL, written into `config.json` (empty: same origin as the page).
    #[arg(long, default_value = "")]
    pub api: String,
}

/// `cargo xtask site`: the page for deployment, with its `config.json`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if !(args.public_url.starts_with('/') && args.public_url.ends_with('/')) {
        bail!("--public-url must start and end with a slash, e.g. /resume-showcase/");
    }
    let api = args.api.trim();
    if !(api.is_empty() || api.starts_with("https://") || api.starts_with("http://")) {
        bail!("--api must be an http(s) URL, or empty for same origin");
    }
    let wasm = crate::setup::ensure_site_tools()?;
    build(&wasm, &args.dist, &args.public_url)?;
    let config = if api.is_empty() {
        "{}\n".to_owned()
    } else {
        format!("{{\"api\":{api:?}}}\n")
    };
    std::fs::write(args.dist.join("config.json"), config)?;
    eprintln!(
        "xtask: config.json: api = {}",
        if api.is_empty() { "same origin" } else { api }
    );
    Ok(())
}

/// Trunk.toml must name exactly the wasm-bindgen of Cargo.lock, or Trunk refuses (offline) or mismatches.
fn check_trunk_config() -> anyhow::Result<()> {
    let locked = locked_version("wasm-bindgen")?;
    let trunk = std::fs::read_to_string("Trunk.toml").context("reading Trunk.toml")?;
    if !trunk.contains(&format!("wasm_bindgen = \"{locked}\"")) {
        bail!("Trunk.toml's [tools] wasm_bindgen must be \"{locked}\" (the version in Cargo.lock)");
    }
    Ok(())
}

/// Total and gzipped bytes of the site's wasm, js and css files.
pub fn size(dist: &Path) -> anyhow::Result<(u64, u64)> {
    let mut raw = 0;
    let mut gzipped = 0;
    for path in files(dist)? {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if !matches!(ext, "wasm" | "js" | "css") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        raw += bytes.len() as u64;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&bytes)?;
        gzipped += encoder.finish()?.len() as u64;
    }
    Ok((raw, gzipped))
}

fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}
