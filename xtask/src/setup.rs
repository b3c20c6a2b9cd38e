//! Installs what the checks need when it is missing, and skips what is already there.
//!
//! Everything is cached outside the repository (rustup's toolchains, `~/.cargo/bin`, Debian packages), so a
//! second run costs nothing. Each step tries the normal path first and falls back where this project's build
//! machines need it:
//!
//! - the WASM standard library is always built from source (`-Zbuild-std`, enabled with `RUSTC_BOOTSTRAP=1` for
//!   this one build) for the baseline wasm CPU, so the distribution's `wasm-opt` can optimise it (Debian's
//!   binaryen 108 rejects or breaks the bulk-memory and reference-types code of rustup's prebuilt std). The
//!   sources come from `rustup component add rust-src` (with a timeout, since rustup's servers may be out of
//!   reach); failing that, from Debian's `rustc-web` + `rust-web-src`, linked as the rustup toolchain
//!   `debian-web`. The same build drops what the page never needs at run time: source locations
//!   (`-Zlocation-detail=none`) and, where the compiler has it, panic machinery (`-Cpanic=immediate-abort`);
//! - `wasm-bindgen-cli` at exactly the version in `Cargo.lock`, and `trunk`: downloaded by cargo-binstall when
//!   it is installed and its downloads are reachable, else compiled with `cargo install` (each says which, and
//!   how long it took);
//! - `wasm-opt` (binaryen), Chromium and ChromeDriver from the system's package manager (apt);
//! - actionlint with `go install`, with Go 1.26 from the machine or fetched through the Go module proxy
//!   ([`crate::go`]).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{self, cargo};

/// The trunk release that builds with the machine's stable Rust (newer ones need a newer compiler).
pub const TRUNK_VERSION: &str = "0.21.14";
/// How long to give `rustup target add` before deciding its servers are out of reach.
const RUSTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the WASM standard library's sources (and the compiler that builds them) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdSource {
    /// The default rustup toolchain with its `rust-src` component.
    Rustup,
    /// Debian's rustc-web with rust-web-src, linked as the rustup toolchain `debian-web`.
    DebianWeb,
}

/// The compiler that builds the page's wasm (std always from source) and what it can do for size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmToolchain {
    source: StdSource,
    /// `-Cpanic=immediate-abort` (Rust 1.92 and later): a panic traps at once, so neither std's panic machinery
    /// nor the messages and formatting code behind every `unwrap` and bounds check are linked.
    immediate_abort: bool,
    /// std's `optimize_for_size` feature (in its sources since Rust 1.81).
    optimize_for_size: bool,
}

impl WasmToolchain {
    fn new(source: StdSource) -> Self {
        let mut probe = Command::new("rustc");
        probe
            .args(["-Zunstable-options", "-Cpanic=immediate-abort", "--print", "cfg"])
            .args(["--target", "wasm32-unknown-unknown"])
            .env("RUSTC_BOOTSTRAP", "1");
        if source == StdSource::DebianWeb {
            probe.env("RUSTUP_TOOLCHAIN", "debian-web");
        }
        let immediate_abort = output_of(&mut probe).is_some();
        let mut sysroot = Command::new("rustc");
        sysroot.args(["--print", "sysroot"]);
        if source == StdSource::DebianWeb {
            sysroot.env("RUSTUP_TOOLCHAIN", "debian-web");
        }
        let optimize_for_size = output_of(&mut sysroot).is_some_and(|root| {
            std::fs::read_to_string(
                Path::new(root.trim()).join("lib/rustlib/src/rust/library/std/Cargo.toml"),
            )
            .is_ok_and(|manifest| manifest.contains("\noptimize_for_size = "))
        });
        Self {
            source,
            immediate_abort,
            optimize_for_size,
        }
    }

    /// Environment variables a wasm build (cargo or trunk) needs with this toolchain.
    ///
    /// The rustflags repeat `.cargo/config.toml`'s baseline CPU (this variable takes its place) and add the
    /// size options: no source locations in the binary, and immediate-abort panics where the compiler has them.
    /// On top of the baseline CPU, four post-MVP features every browser of the last five years has
    /// (saturating float-to-int conversions, sign extension, bulk memory, mutable globals) and that Debian's
    /// binaryen handles: `as` casts from `f64` no longer need range checks around them (1.3 KB of the gzipped
    /// page). std is built with its `optimize_for_size` feature where its sources have it (smaller sorting and
    /// formatting, 4.5 KB).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut rustflags = "-C target-cpu=mvp -C target-feature=+nontrapping-fptoint,+sign-ext,+bulk-memory,+mutable-globals -Zlocation-detail=none".to_owned();
        if self.immediate_abort {
            rustflags.push_str(" -Zunstable-options -Cpanic=immediate-abort");
        }
        let mut env = vec![
            ("RUSTC_BOOTSTRAP", "1".to_owned()),
            ("CARGO_UNSTABLE_BUILD_STD", "std,panic_abort".to_owned()),
            ("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", rustflags),
        ];
        if self.optimize_for_size {
            env.push((
                "CARGO_UNSTABLE_BUILD_STD_FEATURES",
                "optimize_for_size".to_owned(),
            ));
        }
        if self.source == StdSource::DebianWeb {
            env.push(("RUSTUP_TOOLCHAIN", "debian-web".to_owned()));
        }
        env
    }
}

/// Ensures every tool of `cargo xtask test` is present; returns the WASM toolchain to use.
pub fn ensure_all() -> anyhow::Result<WasmToolchain> {
    let wasm = ensure_site_tools()?;
    ensure_actionlint()?;
    // actionlint checks the workflows' shell scripts with shellcheck when it is on PATH.
    ensure_apt(
        &[("shellcheck", "shellcheck")],
        "actionlint checks the workflows' shell steps with it",
    )?;
    // A browser for the end-to-end test: Debian's Chromium, unless CHROME_BIN names another (CI on Ubuntu).
    if std::env::var_os("CHROME_BIN").is_none() {
        ensure_apt(
            &[("chromium", "chromium"), ("chromedriver", "chromium-driver")],
            "the browser tests load the page in a real, headless Chromium",
        )?;
    } else if !on_path("chromedriver") {
        bail!("CHROME_BIN is set but chromedriver is not on PATH");
    }
    // The real node of the production-path test (testkit::node): Debian's container runtime and CNI plugins
    // (an absolute path is checked as a file), iptables, openssl for its certificates, gcc for the pod sandbox.
    ensure_apt(
        &[
            ("containerd", "containerd"),
            ("runc", "runc"),
            ("/usr/lib/cni/bridge", "containernetworking-plugins"),
            ("iptables", "iptables"),
            ("openssl", "openssl"),
            ("gcc", "gcc"),
        ],
        "the real-node test runs the chart's pods as real containers",
    )?;
    Ok(wasm)
}

/// Ensures what building the web page needs (`cargo xtask site`, the Pages workflow).
pub fn ensure_site_tools() -> anyhow::Result<WasmToolchain> {
    ensure_rust_components()?;
    let wasm = ensure_wasm_toolchain()?;
    ensure_apt(
        &[("wasm-opt", "binaryen")],
        "Trunk shrinks the page's wasm with wasm-opt",
    )?;
    ensure_wasm_bindgen()?;
    ensure_trunk()?;
    Ok(wasm)
}

/// actionlint release used to check the GitHub workflows.
pub const ACTIONLINT: &str = "v1.7.12";

/// Where project-installed tools that are not cargo's live.
pub fn tools_bin() -> anyhow::Result<std::path::PathBuf> {
    Ok(crate::process::cache_root()?.join("bin"))
}

/// actionlint, built with `go install` into [`tools_bin`], named by version.
pub fn actionlint() -> anyhow::Result<std::path::PathBuf> {
    Ok(tools_bin()?.join(format!("actionlint-{ACTIONLINT}")))
}

fn ensure_actionlint() -> anyhow::Result<()> {
    let target = actionlint()?;
    if target.is_file() {
        return Ok(());
    }
    let staging = tools_bin()?.join("go-install");
    std::fs::create_dir_all(&staging)?;
    let go = crate::go::ensure().context("actionlint is built with Go")?;
    process::run(
        Command::new(go)
            .env("GOBIN", &staging)
            .env("CGO_ENABLED", "0")
            .args([
                "install",
                &format!("github.com/rhysd/actionlint/cmd/actionlint@{ACTIONLINT}"),
            ]),
    )?;
    std::fs::rename(staging.join("actionlint"), &target)?;
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
        bail!("cargo lacks {missing:?} and rustup is not installed to add them");
    }
    process::run(Command::new("rustup").args(["component", "add"]).args(&missing))
}

fn output_of(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ensure_wasm_toolchain() -> anyhow::Result<WasmToolchain> {
    let rust_src = || {
        output_of(Command::new("rustc").args(["--print", "sysroot"])).is_some_and(|sysroot| {
            Path::new(sysroot.trim())
                .join("lib/rustlib/src/rust/library/std")
                .is_dir()
        })
    };
    if rust_src() {
        return Ok(WasmToolchain::new(StdSource::Rustup));
    }
    let debian_linked = || {
        output_of(Command::new("rustup").args(["toolchain", "list"]))
            .is_some_and(|list| list.lines().any(|l| l.starts_with("debian-web")))
    };
    let debian_src = || Path::new("/usr/lib/rustlib/src/rust/library/std").is_dir();
    if debian_linked() && debian_src() {
        return Ok(WasmToolchain::new(StdSource::DebianWeb));
    }
    eprintln!("xtask: adding rust-src with rustup (timeout {RUSTUP_TIMEOUT:?})");
    if run_with_timeout(
        Command::new("rustup").args(["component", "add", "rust-src"]),
        RUSTUP_TIMEOUT,
    ) && rust_src()
    {
        return Ok(WasmToolchain::new(StdSource::Rustup));
    }
    eprintln!(
        "xtask: rustup cannot download rust-src here; using Debian's rustc-web and rust-web-src instead"
    );
    apt_install(&["rustc-web", "cargo-web", "rust-web-src", "lld-22"])?;
    if !debian_linked() {
        process::run(Command::new("rustup").args(["toolchain", "link", "debian-web", "/usr"]))?;
    }
    if !debian_src() {
        bail!("Debian's rust-web-src did not provide /usr/lib/rustlib/src/rust/library/std");
    }
    Ok(WasmToolchain::new(StdSource::DebianWeb))
}

/// Runs a command, killing it after `timeout`; true if it finished successfully in time.
fn run_with_timeout(command: &mut Command, timeout: Duration) -> bool {
    let Ok(mut child) = command.spawn() else {
        return false;
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Installs the Debian packages whose programs are missing.
/// `why` is printed with what is installed: every step of the set-up says what it installs and why.
pub fn ensure_apt(programs: &[(&str, &str)], why: &str) -> anyhow::Result<()> {
    let missing: Vec<&str> = programs
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} from Debian: {why}", missing.join(", "));
    apt_install(&missing)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !on_path("apt-get") {
        bail!("please install {packages:?} with your system's package manager (no apt-get here)");
    }
    let root = output_of(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0");
    let sudo = |args: &[&str]| {
        let mut command = if root {
            Command::new(args[0])
        } else {
            let mut c = Command::new("sudo");
            c.arg(args[0]);
            c
        };
        command.args(&args[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    process::run(&mut sudo(&["apt-get", "update", "-qq"]))?;
    let mut install = sudo(&["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
    process::run(install.args(packages)).with_context(|| format!("installing {packages:?}"))
}

/// The version of `name` in Cargo.lock.
pub fn locked_version(name: &str) -> anyhow::Result<String> {
    let lock = std::fs::read_to_string("Cargo.lock").context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            let version = lines.next().and_then(|l| l.strip_prefix("version = \""));
            if let Some(version) = version.and_then(|v| v.strip_suffix('"')) {
                return Ok(version.to_owned());
            }
        }
    }
    bail!("{name} is not in Cargo.lock")
}

/// How a cargo-installed tool was got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// cargo-binstall downloaded a release build (seconds, where its downloads are reachable).
    Binstall,
    /// `cargo install` compiled it (minutes; the only way on machines that reach crates.io alone).
    Compiled,
}

/// Installs `krate` at `version`: with cargo-binstall when it is on PATH and can reach its downloads (a
/// laptop with internet), else by compiling it; prints the route and how long it took.
fn install_tool(krate: &str, version: &str, compile_flags: &[&str]) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let route = install_tool_with(&path, krate, version, binstall, |krate, version| {
        cargo_install(krate, version, compile_flags)
    })?;
    let how = match route {
        Route::Binstall => "downloaded by cargo-binstall",
        Route::Compiled => "compiled",
    };
    eprintln!(
        "xtask: {krate} {version} {how} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// [`install_tool`]'s choice, with the `PATH` to look for cargo-binstall on and the two ways passed in (tests
/// pass fakes).
fn install_tool_with(
    path: &std::ffi::OsStr,
    krate: &str,
    version: &str,
    binstall: impl FnOnce(&Path, &str, &str) -> anyhow::Result<()>,
    compile: impl FnOnce(&str, &str) -> anyhow::Result<()>,
) -> anyhow::Result<Route> {
    let found = std::env::split_paths(path)
        .map(|dir| dir.join("cargo-binstall"))
        .find(|candidate| candidate.is_file());
    match found {
        Some(binstall_bin) => match binstall(&binstall_bin, krate, version) {
            Ok(()) => return Ok(Route::Binstall),
            Err(e) => eprintln!(
                "xtask: cargo-binstall could not get {krate} {version} ({e:#}); compiling it instead"
            ),
        },
        None => eprintln!(
            "xtask: compiling {krate} {version} (a few minutes; with cargo-binstall installed, a download instead)"
        ),
    }
    compile(krate, version)?;
    Ok(Route::Compiled)
}

/// How long cargo-binstall gets before its downloads count as out of reach.
const BINSTALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A release build of `krate` by cargo-binstall, never compiled by it (the caller compiles when this fails).
fn binstall(binstall_bin: &Path, krate: &str, version: &str) -> anyhow::Result<()> {
    let mut command = Command::new(binstall_bin);
    command.args([
        "binstall",
        "--no-confirm",
        "--disable-strategies",
        "compile",
        "--version",
        version,
        krate,
    ]);
    eprintln!("xtask: $ {}", binstall_bin.display());
    if run_with_timeout(&mut command, BINSTALL_TIMEOUT) {
        Ok(())
    } else {
        bail!("it failed or took longer than {BINSTALL_TIMEOUT:?}")
    }
}

/// `cargo install` of an exact version, first with `--locked`, then without (the registry index here can lack
/// a locked dependency version).
fn cargo_install(krate: &str, version: &str, flags: &[&str]) -> anyhow::Result<()> {
    let attempt = |locked: bool| {
        let mut command = cargo();
        command.args(["install", krate, "--version", version]).args(flags);
        if locked {
            command.arg("--locked");
        }
        process::run(&mut command)
    };
    attempt(true).or_else(|_| attempt(false))
}

fn ensure_wasm_bindgen() -> anyhow::Result<()> {
    let version = locked_version("wasm-bindgen")?;
    let installed = output_of(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if installed.split_whitespace().nth(1) == Some(version.as_str()) {
        return Ok(());
    }
    install_tool("wasm-bindgen-cli", &version, &[])
}

fn ensure_trunk() -> anyhow::Result<()> {
    let installed = output_of(Command::new("trunk").arg("--version")).unwrap_or_default();
    if installed.split_whitespace().nth(1) == Some(TRUNK_VERSION) {
        return Ok(());
    }
    // Without its default features: no TLS stack and no update check, which it never needs (Trunk.toml keeps
    // it offline; the set-up installs its tools). It does not compile faster for it: 867 s here (BENCHMARKS.md).
    install_tool("trunk", TRUNK_VERSION, &["--no-default-features"])
}

#[cfg(test)]
mod tests {
    //! The front-end tools' route, with fake cargo-binstall commands: only the fallback can run for real
    //! on machines without internet, so both choices are checked here without the network.
    use super::*;
    use std::cell::Cell;

    fn dir_with_binstall(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-binstall-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("cargo-binstall");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'cargo-binstall: cannot reach github.com' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(
            &fake,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
        dir
    }

    #[test]
    fn without_cargo_binstall_the_tool_is_compiled() {
        let compiled = Cell::new(false);
        let route = install_tool_with(
            std::ffi::OsStr::new("/nonexistent"),
            "trunk",
            TRUNK_VERSION,
            |_, _, _| panic!("no cargo-binstall on this PATH"),
            |krate, version| {
                assert_eq!((krate, version), ("trunk", TRUNK_VERSION));
                compiled.set(true);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(route, Route::Compiled);
        assert!(compiled.get());
    }

    #[test]
    fn cargo_binstall_that_cannot_download_falls_back_to_compiling() {
        let dir = dir_with_binstall("offline");
        let tried = Cell::new(false);
        let route = install_tool_with(
            dir.as_os_str(),
            "wasm-bindgen-cli",
            "0.2.100",
            |bin, krate, _| {
                tried.set(true);
                assert_eq!(bin, dir.join("cargo-binstall"));
                // The real call, against a fake that fails as an offline cargo-binstall does.
                binstall(bin, krate, "0.2.100")
            },
            |_, _| Ok(()),
        )
        .unwrap();
        assert!(tried.get(), "cargo-binstall was tried first");
        assert_eq!(route, Route::Compiled);
    }

    #[test]
    fn cargo_binstall_that_downloads_is_the_whole_install() {
        let dir = dir_with_binstall("online");
        let route = install_tool_with(
            dir.as_os_str(),
            "trunk",
            TRUNK_VERSION,
            |_, _, _| Ok(()),
            |_, _| panic!("nothing to compile"),
        )
        .unwrap();
        assert_eq!(route, Route::Binstall);
    }
}
