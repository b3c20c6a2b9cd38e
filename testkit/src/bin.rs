//! The workspace's own binaries for tests in other packages: built once per test process with the same
//! profile as the test itself, so they are never stale, and found next to it in the target directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// The binary `bin` of package `package` (`cargo build -p <package> --bin <bin>`), built on first use.
pub fn workspace_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get_or_insert_default().get(bin) {
        return Ok(path.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--quiet", "-p", package, "--bin", bin]);
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target/<profile>/<bin>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test executable is not in target/<profile>/deps")?;
    if profile_dir.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build -p {package} --bin {bin} failed");
    }
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!("{} is missing after the build", path.display());
    }
    built.get_or_insert_default().insert(bin.to_owned(), path.clone());
    Ok(path)
}

/// A service binary for a test that prints speed figures: `<dir>/<bin>` when `SHOWCASE_RELEASE_BIN` names a
/// directory of release builds (`cargo xtask test` sets it to the images' static builds of this tree, in
/// `target/images/bin`), else [`workspace_binary`] (the test's own profile, a debug build).
pub fn release_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    match std::env::var_os("SHOWCASE_RELEASE_BIN") {
        Some(dir) => {
            let path = PathBuf::from(dir).join(bin);
            if !path.is_file() {
                bail!("SHOWCASE_RELEASE_BIN has no {bin}: {}", path.display());
            }
            Ok(path)
        }
        None => workspace_binary(package, bin),
    }
}
