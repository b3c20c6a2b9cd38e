//! Small helpers for running programs from xtask with clear errors.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}

/// `~/.cache/resume-showcase`: everything the set-up builds or fetches that outlives a clone (tools, the
/// Kubernetes binaries, Go, the images' build directory).
pub fn cache_root() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/resume-showcase"))
}

/// The `cargo` that runs us, so every step uses the same toolchain. Without the variables `cargo run` set
/// for xtask itself: build scripts that watch them (ring's watches `CARGO_MANIFEST_DIR`) would otherwise see
/// a change whenever the clone moves, and rebuild with everything that depends on them.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || matches!(
                key.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(key.as_ref());
        }
    }
    command
}

/// Runs a command to completion, echoing it first; fails when it fails.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(command));
    }
    Ok(())
}

/// Runs a command to completion, echoing it first, with stderr passed through; its stdout, or an error when
/// it fails.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    eprintln!("xtask: $ {}", describe(command));
    let out = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    if !out.status.success() {
        bail!("{} failed with {}", describe(command), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a program answers `--version` (is installed and runs).
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// `program arg arg ...`, for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo build --release --locked -p <package>...`.
pub fn build_release(packages: &[&str]) -> anyhow::Result<()> {
    let mut command = cargo();
    command.args(["build", "--release", "--locked"]);
    for package in packages {
        command.args(["-p", package]);
    }
    run(&mut command)
}
