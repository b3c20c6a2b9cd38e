//! The Go toolchain the Kubernetes test binaries and actionlint are built with: Go 1.26 or newer.
//!
//! A `go` on `PATH` that is new enough is used as is. Otherwise the set-up gets [`TOOLCHAIN`] through the Go
//! module proxy, which serves toolchains as modules (`golang.org/toolchain@v0.0.1-go<version>.<os>-<arch>`):
//! an older `go` downloads it (Debian 12's Go 1.19 can; it predates `GOTOOLCHAIN`), and where there is no
//! `go` at all, Debian's `golang-go` is installed first for that one download. The module zip drops the
//! execute bits, so the toolchain is copied out of the module cache into `~/.cache/resume-showcase/` and its
//! `bin/*` and `pkg/tool/*/*` made executable again.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The Go release the set-up fetches when the machine has none new enough.
pub const TOOLCHAIN: &str = "1.26.8";
/// The oldest `go` used as found.
const MINIMUM: (u32, u32) = (1, 26);

/// Where a fetched toolchain is kept (its `bin/go` is the command).
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::process::cache_root()?.join(format!("go{TOOLCHAIN}")))
}

/// The `go` command to build with, fetching the toolchain when needed (see the module documentation).
pub fn ensure() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ensure_with(&path, &cache_dir()?, || {
        eprintln!("xtask: no `go` on PATH: installing Debian's golang-go, only to download Go {TOOLCHAIN}");
        crate::setup::apt_install(&["golang-go"])
    })
}

/// [`ensure`] with the `PATH` to search, the cache directory, and how to get a bootstrap `go` when `PATH` has
/// none (tests pass fakes).
pub fn ensure_with(
    path: &OsStr,
    cache: &Path,
    install_bootstrap: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let cached = cache.join("bin/go");
    if version_of(&cached).is_some_and(|v| v >= MINIMUM) {
        return Ok(cached);
    }
    let found = find(path, "go");
    if let Some(go) = &found
        && let Some(version) = version_of(go)
        && version >= MINIMUM
    {
        return Ok(go.clone());
    }
    let bootstrap = match found {
        Some(go) => {
            eprintln!(
                "xtask: {} is older than Go {}.{}: fetching Go {TOOLCHAIN} through the module proxy",
                go.display(),
                MINIMUM.0,
                MINIMUM.1
            );
            go
        }
        None => {
            install_bootstrap()?;
            find(path, "go")
                .or_else(|| find(OsStr::new("/usr/lib/go/bin:/usr/bin"), "go"))
                .context("installed golang-go, but there is still no `go` command")?
        }
    };
    fetch(&bootstrap, cache)?;
    match version_of(&cached) {
        Some(version) if version >= MINIMUM => Ok(cached),
        _ => bail!(
            "the fetched Go {TOOLCHAIN} at {} does not run (`go version` failed)",
            cached.display()
        ),
    }
}

/// `go` run in `dir` the way every build here runs it: no cgo (static binaries), module mode with go.mod
/// updated as needed, and this toolchain (never one a go.mod asks for).
pub fn command(go: &Path, dir: &Path) -> Command {
    let mut command = Command::new(go);
    command
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local");
    command
}

/// Where `go mod download -json <module>@<version>` (the `command` given) put the module.
pub fn module_dir(command: &mut Command) -> anyhow::Result<PathBuf> {
    let answer = crate::process::output(command)?;
    serde_json::from_str::<serde_json::Value>(&answer)?["Dir"]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("`go mod download` did not say where the module is: {answer}"))
}

/// `go version` of `go`, as (major, minor).
fn version_of(go: &Path) -> Option<(u32, u32)> {
    let output = Command::new(go)
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

/// `go version go1.19.8 linux/amd64` → (1, 19).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let release = text.split_whitespace().find_map(|word| {
        word.strip_prefix("go")
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    })?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn find(path: &OsStr, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Downloads the toolchain module with `bootstrap` and copies it to `cache`, executable.
fn fetch(bootstrap: &Path, cache: &Path) -> anyhow::Result<()> {
    let module = format!("golang.org/toolchain@v0.0.1-go{TOOLCHAIN}.linux-{}", arch()?);
    eprintln!("xtask: $ {} mod download -json {module}", bootstrap.display());
    let output = Command::new(bootstrap)
        .args(["mod", "download", "-json", &module])
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .with_context(|| format!("running {}", bootstrap.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "`go mod download {module}` failed (is the Go module proxy reachable? GOPROXY names it): {}{}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let dir = serde_json::from_str::<serde_json::Value>(&stdout)
        .ok()
        .and_then(|v| v["Dir"].as_str().map(PathBuf::from))
        .with_context(|| format!("`go mod download` did not say where {module} is: {stdout}"))?;
    let staging = cache.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    copy_tree(&dir, &staging)?;
    for executables in ["bin", "pkg/tool"] {
        make_executable(&staging.join(executables))?;
    }
    if cache.exists() {
        std::fs::remove_dir_all(cache)?;
    }
    std::fs::rename(&staging, cache)?;
    Ok(())
}

fn arch() -> anyhow::Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => bail!("no Go toolchain module is known for the {other} architecture"),
    }
}

/// Copies `from` to `to`, directories writable (the module cache's are read-only) and files as they are.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Restores the execute bits of every file under `dir` (the toolchain's commands and tools).
fn make_executable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_executable(&entry.path())?;
        } else {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The decisions with fake `go` commands (shell scripts): no network, no real toolchain.
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(path: &Path, body: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A scratch directory of its own for each test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-go-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A module-cache copy of the toolchain as the proxy's zip leaves it: no execute bits, read-only.
    fn fake_module(root: &Path) -> PathBuf {
        let module = root.join("modcache/golang.org/toolchain@v0.0.1");
        script(
            &module.join("bin/go"),
            &format!("echo go version go{TOOLCHAIN} linux/amd64"),
        );
        script(&module.join("pkg/tool/linux_amd64/compile"), "exit 0");
        for file in ["bin/go", "pkg/tool/linux_amd64/compile"] {
            std::fs::set_permissions(module.join(file), std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        module
    }

    /// A bootstrap `go` that says `version` and answers `mod download -json` with `module`'s directory,
    /// logging its arguments.
    fn old_go(bin: &Path, version: &str, module: &Path, log: &Path) {
        script(
            &bin.join("go"),
            &format!(
                "echo \"$@\" >> {log}\ncase \"$1\" in\n  version) echo go version go{version} linux/amd64 ;;\n  mod) echo '{{\"Dir\": \"{dir}\"}}' ;;\n  *) exit 2 ;;\nesac",
                log = log.display(),
                dir = module.display(),
            ),
        );
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("go version go1.19.8 linux/amd64"), Some((1, 19)));
        assert_eq!(parse_version("go version go1.26rc1 linux/amd64"), Some((1, 26)));
        assert_eq!(parse_version("go version devel"), None);
    }

    #[test]
    fn a_new_enough_go_on_path_is_used_as_is() {
        let root = scratch("new");
        let bin = root.join("bin");
        old_go(&bin, "1.27.1", &root, &root.join("log"));
        let go = ensure_with(bin.as_os_str(), &root.join("cache"), || bail!("no install")).unwrap();
        assert_eq!(go, bin.join("go"));
        assert!(!root.join("cache").exists(), "nothing fetched");
    }

    #[test]
    fn a_go_too_old_fetches_the_toolchain_module_and_restores_its_execute_bits() {
        let root = scratch("old");
        let module = fake_module(&root);
        let bin = root.join("bin");
        let log = root.join("log");
        old_go(&bin, "1.19.8", &module, &log);
        let cache = root.join("cache");
        let go = ensure_with(bin.as_os_str(), &cache, || bail!("must not install")).unwrap();
        assert_eq!(go, cache.join("bin/go"));
        assert_eq!(version_of(&go), Some((1, 26)), "the fetched go runs");
        let mode = std::fs::metadata(cache.join("pkg/tool/linux_amd64/compile"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "tools are executable again");
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains(&format!(
                "mod download -json golang.org/toolchain@v0.0.1-go{TOOLCHAIN}.linux-"
            )),
            "{calls}"
        );

        // A second run uses the cache without asking the old go anything.
        std::fs::remove_file(&log).unwrap();
        assert_eq!(ensure_with(bin.as_os_str(), &cache, || bail!("no")).unwrap(), go);
        assert!(!log.exists(), "the cached toolchain needs no download");
    }

    #[test]
    fn no_go_at_all_installs_a_bootstrap_first() {
        let root = scratch("none");
        let module = fake_module(&root);
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let mut installed = false;
        let go = ensure_with(bin.as_os_str(), &root.join("cache"), || {
            installed = true;
            old_go(&bin, "1.19.8", &module, &root.join("log"));
            Ok(())
        })
        .unwrap();
        assert!(installed);
        assert_eq!(version_of(&go), Some((1, 26)));
    }

    #[test]
    fn a_failing_download_says_what_failed() {
        let root = scratch("offline");
        let bin = root.join("bin");
        script(
            &bin.join("go"),
            "case \"$1\" in version) echo go version go1.19.8 linux/amd64 ;; *) echo 'proxy.golang.org: no route' >&2; exit 1 ;; esac",
        );
        let error = ensure_with(bin.as_os_str(), &root.join("cache"), || bail!("no"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("module proxy") && error.contains("no route"),
            "{error}"
        );
    }
}
