//! The Kubernetes control-plane binaries for the tests against a real API server, built from Go modules and
//! cached outside the repository by version (`~/.cache/resume-showcase/k8s-<version>/bin`).
//!
//! No container engine and no prebuilt downloads are available on the build machines, so:
//! - kube-apiserver, kube-controller-manager, kube-scheduler, and the real node's kubelet and kube-proxy come
//!   from one small wrapper module that requires `k8s.io/kubernetes` and replaces every `k8s.io/<staging>`
//!   module with its published `v0.<minor>.<patch>` (the list is read from the kubernetes go.mod), stamped
//!   with the version through `-X` ldflags: one module download and one build cache for all five;
//! - the pod sandbox ("pause") binary is compiled with `gcc -static` from the same module's
//!   `build/pause/linux/pause.c` (its image cannot be pulled here);
//! - etcd from a wrapper `main` calling `etcdmain.Main`;
//! - kwok, kwokctl and helm with `go install`.
//!
//! A cold build takes tens of minutes on two cores; Go's own module and build caches make later ones quick, and
//! a complete `bin/` is reused as is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{disk, process};

/// Free space a cold build needs for Go's module and build caches and the binaries (measured: 6.5 GiB; set a
/// little below, like `cargo xtask test`'s check).
const BUILD_SPACE: u64 = 6 * disk::GIB;

/// Kubernetes release of the test control plane (k8s-openapi's `v1_36` feature matches it).
pub const KUBERNETES: &str = "v1.36.3";
/// etcd release used by that Kubernetes line.
pub const ETCD: &str = "v3.6.16";
/// kwok release (fake nodes that run pods without containers).
pub const KWOK: &str = "v0.8.0";
/// helm release.
pub const HELM: &str = "v3.22.0";

/// Every binary the cluster tests need.
pub const BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "pause",
    "etcd",
    "kwok",
    "kwokctl",
    "helm",
];

/// kwok's behaviour for the tests: its upstream "fast" stages except `pod-complete`, which would mark every
/// Job's pod Succeeded as soon as it runs (session pods are Jobs that must keep running). Assembled from the
/// kwok module's own files, kept beside the binaries.
pub const KWOK_STAGES: &str = "kwok-stages.yaml";
const KWOK_STAGE_FILES: &[&str] = &[
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
];

/// The cache directory for this set of versions.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    Ok(crate::process::cache_root()?.join(format!("k8s-{KUBERNETES}-etcd-{ETCD}-kwok-{KWOK}-helm-{HELM}")))
}

/// Builds whatever is missing; returns the directory holding every binary.
pub fn ensure_binaries() -> anyhow::Result<PathBuf> {
    let cache = cache_dir()?;
    let bin = cache.join("bin");
    if BINARIES
        .iter()
        .chain([&KWOK_STAGES])
        .all(|b| bin.join(b).is_file())
    {
        return Ok(bin);
    }
    let go_bin = crate::go::ensure().context("the Kubernetes test binaries are built with Go")?;
    let _ = GO.set(go_bin);
    disk::ensure_free(&cache, BUILD_SPACE, "building the Kubernetes test binaries")?;
    std::fs::create_dir_all(&bin)?;
    build_kubernetes(&cache, &bin)?;
    build_etcd(&cache, &bin)?;
    for (package, version) in [
        ("sigs.k8s.io/kwok/cmd/kwok", KWOK),
        ("sigs.k8s.io/kwok/cmd/kwokctl", KWOK),
        ("helm.sh/helm/v3/cmd/helm", HELM),
    ] {
        let name = package.rsplit('/').next().unwrap_or(package);
        if !bin.join(name).is_file() {
            process::run(
                go(&cache)
                    .env("GOBIN", &bin)
                    .args(["install", &format!("{package}@{version}")]),
            )?;
        }
    }
    write_kwok_stages(&cache, &bin)?;
    Ok(bin)
}

fn write_kwok_stages(cache: &Path, bin: &Path) -> anyhow::Result<()> {
    let dir = crate::go::module_dir(go(cache).args([
        "mod",
        "download",
        "-json",
        &format!("sigs.k8s.io/kwok@{KWOK}"),
    ]))?;
    let mut stages = String::new();
    for file in KWOK_STAGE_FILES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        stages.push_str("---\n");
        stages.push_str(&text);
    }
    std::fs::write(bin.join(KWOK_STAGES), stages)?;
    Ok(())
}

/// The `go` that [`ensure_binaries`] found or fetched.
static GO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn go(dir: &Path) -> Command {
    crate::go::command(GO.get().map_or(Path::new("go"), PathBuf::as_path), dir)
}

/// The commands built from the kubernetes module.
const KUBERNETES_COMMANDS: [&str; 5] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
];

fn build_kubernetes(cache: &Path, bin: &Path) -> anyhow::Result<()> {
    let commands = KUBERNETES_COMMANDS;
    if commands.iter().all(|c| bin.join(c).is_file()) && bin.join("pause").is_file() {
        return Ok(());
    }
    let src = cache.join("kubernetes");
    std::fs::create_dir_all(&src)?;
    // The kubernetes go.mod says which staging modules it replaces with local paths.
    let module_dir = crate::go::module_dir(go(&src).args([
        "mod",
        "download",
        "-json",
        &format!("k8s.io/kubernetes@{KUBERNETES}"),
    ]))?;
    let modcache = output(go(&src).args(["env", "GOMODCACHE"]))?;
    let upstream =
        Path::new(modcache.trim()).join(format!("cache/download/k8s.io/kubernetes/@v/{KUBERNETES}.mod"));
    let upstream =
        std::fs::read_to_string(&upstream).with_context(|| format!("reading {}", upstream.display()))?;
    let staging_version = KUBERNETES.replacen("v1.", "v0.", 1);
    let mut go_mod = format!(
        "module showcase.local/k8sbins\n\ngo 1.26\n\nrequire k8s.io/kubernetes {KUBERNETES}\n\nreplace (\n"
    );
    for line in upstream.lines() {
        if let Some((module, target)) = line.trim().split_once("=>")
            && target.trim().starts_with("./staging/")
        {
            let module = module.trim();
            go_mod.push_str(&format!("\t{module} => {module} {staging_version}\n"));
        }
    }
    go_mod.push_str(")\n");
    std::fs::write(src.join("go.mod"), go_mod)?;
    let imports: String = commands
        .iter()
        .map(|c| format!("\t_ \"k8s.io/kubernetes/cmd/{c}\"\n"))
        .collect();
    std::fs::write(
        src.join("tools.go"),
        format!("//go:build tools\n\npackage tools\n\nimport (\n{imports})\n"),
    )?;
    process::run(go(&src).args(["mod", "tidy"]))?;
    let minor = KUBERNETES.split('.').nth(1).unwrap_or("0");
    let ldflags = format!(
        "-s -w -X k8s.io/component-base/version.gitVersion={KUBERNETES} \
         -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor={minor}"
    );
    for command in commands.iter().filter(|c| !bin.join(c).is_file()) {
        process::run(
            go(&src)
                .args(["build", "-ldflags", &ldflags, "-o"])
                .arg(bin.join(command))
                .arg(format!("k8s.io/kubernetes/cmd/{command}")),
        )?;
    }
    if !bin.join("pause").is_file() {
        process::run(
            Command::new("gcc")
                .args(["-static", "-O2", "-o"])
                .arg(bin.join("pause"))
                .arg(module_dir.join("build/pause/linux/pause.c")),
        )
        .context("the pod sandbox binary needs gcc (Debian: build-essential)")?;
    }
    Ok(())
}

fn build_etcd(cache: &Path, bin: &Path) -> anyhow::Result<()> {
    if bin.join("etcd").is_file() {
        return Ok(());
    }
    let src = cache.join("etcd");
    std::fs::create_dir_all(&src)?;
    std::fs::write(
        src.join("go.mod"),
        format!("module showcase.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 {ETCD}\n"),
    )?;
    std::fs::write(
        src.join("main.go"),
        "// etcd, built from its server module.\npackage main\n\nimport (\n\t\"os\"\n\n\t\
         \"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n",
    )?;
    process::run(go(&src).args(["mod", "tidy"]))?;
    process::run(
        go(&src)
            .args(["build", "-ldflags", "-s -w", "-o"])
            .arg(bin.join("etcd"))
            .arg("."),
    )
}

fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {}", process::describe(command)))?;
    if !out.status.success() {
        bail!("{} failed", process::describe(command));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
