//! `cargo xtask test`: every check of the project, in the order a reviewer would run them.
//!
//! Steps: set-up (tools installed when missing, the Kubernetes test binaries built once and cached),
//! `cargo fmt --check`, `cargo clippy --all-targets -D warnings`,
//! actionlint over `.github/workflows`,
//! the web page built with Trunk (so the browser test loads the real build), the container images (for the
//! real node), `cargo test --workspace`, then the real-node test on its own (it needs root, and gets only the
//! environment it is handed). Test output is passed through as it comes, and the per-binary `test result:`
//! lines are added up into one closing `summary: N passed, M failed` line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::process::{self, cargo};
use crate::{cluster, disk, image, setup, site};

/// Flags of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Args {
    /// Skip `cargo fmt --check` and clippy (quicker local iterations).
    #[arg(long)]
    pub no_lint: bool,
}

/// Free space a whole run needs in `target/` (measured from a fresh clone: 4.5 GiB). Set a little below the
/// measurement: the check is there to name a disk that is plainly too full, never to refuse a run that fits.
const TARGET_SPACE: u64 = 4 * disk::GIB;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let target = process::workspace_root().join("target");
    disk::ensure_room_to_grow(&target, TARGET_SPACE, disk::GIB / 2, "`cargo xtask test`")?;
    let wasm = setup::ensure_all()?;
    let k8s_bin = cluster::ensure_binaries()?;
    crate::traefik::ensure(&k8s_bin)?;
    if !args.no_lint {
        process::run(cargo().args(["fmt", "--all", "--check"]))?;
        process::run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))?;
        process::run(std::process::Command::new(setup::actionlint()?).arg("-no-color"))?;
    }
    let dist = process::workspace_root().join("target/e2e/dist");
    site::build(&wasm, &dist, "/")?;
    // The real node's images: both binaries as static musl builds, and the pod sandbox.
    let images = image::build()?;
    image::pause(&k8s_bin)?;
    let images = images
        .first()
        .and_then(|i| i.archive.parent())
        .context("no images were built")?
        .to_path_buf();
    let totals = cargo_test(&dist, &k8s_bin, &images)?;
    println!("summary: {} passed, {} failed", totals.passed, totals.failed);
    if totals.failed > 0 {
        bail!("{} tests failed", totals.failed);
    }
    Ok(())
}

/// Where the README's picture of the page lives.
pub const PICTURE: &str = "docs/page.webp";

/// `cargo xtask picture`: builds the site and runs the browser test alone, which writes the README's picture
/// (the board and a recovery, after its first kill) to [`PICTURE`].
pub fn picture() -> anyhow::Result<()> {
    let wasm = setup::ensure_all()?;
    let root = process::workspace_root();
    let dist = root.join("target/e2e/dist");
    site::build(&wasm, &dist, "/")?;
    process::run(
        cargo()
            .args([
                "test",
                "--locked",
                "-p",
                "e2e",
                "--test",
                "browser",
                "--",
                "--nocapture",
            ])
            .env("E2E_DIST", &dist)
            .env("E2E_PICTURE", root.join(PICTURE)),
    )?;
    let size = std::fs::metadata(root.join(PICTURE))
        .with_context(|| format!("the browser test wrote no {PICTURE}"))?
        .len();
    println!("{PICTURE}: {:.1} KB", size as f64 / 1024.0);
    Ok(())
}

#[derive(Default, Debug, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
}

/// The test that needs root: it starts a real node (containerd, the kubelet, a bridge, iptables rules).
const REAL_NODE_TEST: &str = "the_chart_runs_on_a_real_node_through_its_ingress";

/// What every test of `cargo xtask test` is told: the page's build, the Kubernetes binaries, the images and
/// their release binaries, and, when set, the browser (`CHROME_BIN`), the log filter (`RUST_LOG`),
/// `SHOWCASE_KEEP_NODE` and `TMPDIR` (where the clusters and the node keep their files: a machine's `/tmp` can
/// be a small tmpfs). The real-node test gets this list, `PATH` and `HOME` only, as root too
/// ([`real_node_alone`]), so a variable it needs and sudo would drop is missed here, not first on GitHub's
/// runners.
fn test_env(dist: &Path, k8s_bin: &Path, images: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env = vec![
        ("E2E_DIST", dist.as_os_str().to_owned()),
        ("SHOWCASE_K8S_BIN", k8s_bin.as_os_str().to_owned()),
        ("SHOWCASE_RELEASE_BIN", images.join("bin").into_os_string()),
        ("SHOWCASE_IMAGES", images.as_os_str().to_owned()),
    ];
    for key in ["CHROME_BIN", "RUST_LOG", "SHOWCASE_KEEP_NODE", "TMPDIR"] {
        if let Some(value) = std::env::var_os(key) {
            env.push((key, value));
        }
    }
    env
}

/// Every test: the workspace's, then the real-node test on its own (it needs root).
fn cargo_test(dist: &Path, k8s_bin: &Path, images: &Path) -> anyhow::Result<Totals> {
    let env = test_env(dist, k8s_bin, images);
    let workspace_tests = || {
        let mut command = cargo();
        // --no-fail-fast: one failing test binary must not hide the results of the others.
        command
            .args([
                "test",
                "--workspace",
                "--locked",
                "--no-fail-fast",
                "--color",
                "never",
            ])
            .envs(env.iter().cloned());
        command
    };
    let mut totals = counted(workspace_tests().args(["--", "--skip", REAL_NODE_TEST]))?;
    // The same build (so nothing is compiled again), for the real-node test's executable.
    let built = process::output(workspace_tests().args(["--no-run", "--message-format", "json"]))?;
    let executable = test_executable(&built, "real_node")
        .context("cargo did not say where the real-node test binary is")?;
    let node = real_node_alone(&executable, &env)?;
    totals.passed += node.passed;
    totals.failed += node.failed;
    Ok(totals)
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs the real-node test's `executable` with `env` and `PATH` (the sbin directories added) only: as root with
/// the rest of the environment cleared (`HOME` kept), else with `sudo -n` (passwordless sudo, as on GitHub's
/// runners), which resets it (and sets `HOME` itself).
fn real_node_alone(executable: &Path, env: &[(&str, std::ffi::OsString)]) -> anyhow::Result<Totals> {
    // A user's PATH on Debian lacks the sbin directories, where iptables, sysctl and modprobe live.
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    for sbin in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !std::env::split_paths(&path).any(|dir| dir == Path::new(sbin)) {
            path.push(format!(":{sbin}"));
        }
    }
    let assignments = std::iter::once(("PATH", &path))
        .chain(env.iter().map(|(k, v)| (*k, v)))
        .map(|(key, value)| {
            let mut assignment = std::ffi::OsString::from(format!("{key}="));
            assignment.push(value);
            assignment
        });
    let mut command = if is_root() {
        let mut command = std::process::Command::new("env");
        command.arg("-i");
        if let Some(home) = std::env::var_os("HOME") {
            let mut assignment = std::ffi::OsString::from("HOME=");
            assignment.push(home);
            command.arg(assignment);
        }
        command
    } else {
        if !std::process::Command::new("sudo")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success())
        {
            bail!("the real-node test needs root: run `cargo xtask test` as root or with passwordless sudo");
        }
        let mut command = std::process::Command::new("sudo");
        command.args(["-n", "env"]);
        command
    };
    command
        .args(assignments)
        .arg(executable)
        .args(["--exact", REAL_NODE_TEST, "--nocapture"]);
    counted(&mut command)
}

/// The executable of test target `name`, from `cargo test --no-run --message-format json`'s messages.
fn test_executable(messages: &str, name: &str) -> Option<std::path::PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|m| m["target"]["name"] == name && m["executable"].is_string())
        .and_then(|m| m["executable"].as_str().map(std::path::PathBuf::from))
}

/// Runs a test command, passing its output through, and adds up its `test result:` lines.
fn counted(command: &mut std::process::Command) -> anyhow::Result<Totals> {
    command.stdout(Stdio::piped());
    eprintln!("xtask: $ {}", process::describe(command));
    let mut child = command.spawn().context("cannot start the tests")?;
    let stdout = child.stdout.take().context("the tests have no stdout")?;
    let mut totals = Totals::default();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        writeln!(out, "{line}")?;
        if let Some((passed, failed)) = parse_result_line(&line) {
            totals.passed += passed;
            totals.failed += failed;
        }
    }
    let status = child.wait()?;
    if !status.success() && totals.failed == 0 {
        bail!("the tests failed ({status}) before reporting any failed test: see the output above");
    }
    Ok(totals)
}

/// Parses `test result: ok. 12 passed; 0 failed; 0 ignored; ...`.
fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |label: &str| -> Option<u64> {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(label))
            .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_test_binary_is_found_in_cargos_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"e2e"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"real_node"},"executable":"/t/deps/real_node-1"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            test_executable(messages, "real_node"),
            Some(std::path::PathBuf::from("/t/deps/real_node-1"))
        );
        assert_eq!(test_executable(messages, "browser"), None);
    }

    use super::*;

    #[test]
    fn parses_cargo_result_lines() {
        assert_eq!(
            parse_result_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out"),
            Some((12, 0))
        );
        assert_eq!(
            parse_result_line(
                "test result: FAILED. 9 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.15s"
            ),
            Some((9, 1))
        );
        assert_eq!(parse_result_line("running 3 tests"), None);
    }
}
