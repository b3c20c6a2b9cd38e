//! `cargo xtask images`: the two container images built here, without a container engine or a registry.
//!
//! The same images the `Dockerfile` makes for GHCR: a static musl binary (`server` or `provisioner`) on a
//! distroless/static-like base — `/etc/passwd` and `/etc/group` with the numeric non-root user 65532, the CA
//! certificates, `/tmp` — run as `65532:65532` with the binary as the entrypoint. Each is written as an OCI image
//! archive (`oci-layout`, `index.json` naming the image, one uncompressed layer, its config, the manifest), which
//! `ctr -n k8s.io images import` loads into the test node's containerd. An image of 20 MB or more fails the
//! build, as `e2e.yml` does for the Docker-built ones.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::process::{self, cargo};

/// The target the images' binaries are built for: static, no libc to ship.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The tag of the locally built images (what the chart is told to run on the test node).
pub const TAG: &str = "local";
/// The repository the images are named under (`<REPOSITORY>/server:<TAG>`), as in the chart's default.
pub const REPOSITORY: &str = "ghcr.io/resume-showcase/resume-showcase";
/// An image this large or larger fails the build.
const MAX_IMAGE_BYTES: u64 = 20 * 1000 * 1000;
/// The non-root user every image runs as (a number: `runAsNonRoot` needs one).
const USER: u32 = 65532;

/// One image: its binary, the port it exposes.
struct Spec {
    name: &'static str,
    port: Option<u16>,
}

const IMAGES: &[Spec] = &[
    Spec {
        name: "server",
        port: Some(8080),
    },
    Spec {
        name: "provisioner",
        port: Some(8081),
    },
];

/// A built image archive.
#[derive(Debug, Clone)]
pub struct Image {
    /// `<repository>/<name>:<tag>`.
    pub reference: String,
    /// The OCI archive.
    pub archive: PathBuf,
    /// Uncompressed size of its one layer, in bytes.
    pub size: u64,
}

/// Builds both binaries for [`TARGET`] and writes both archives under `target/images/`; returns them.
pub fn build() -> anyhow::Result<Vec<Image>> {
    ensure_target()?;
    let started = std::time::Instant::now();
    // The musl release build has its own build directory outside the clone: a clean clone then compiles
    // only the workspace's own crates (its dependencies are cached): 4.5 min instead of 8 from a clean clone
    // (2026-12-01). Cargo locks the directory, so two clones building at once take turns.
    let target_dir = process::cache_root()?.join("images-target");
    process::run(
        cargo()
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                TARGET,
                "-p",
                "server",
                "-p",
                "provisioner",
            ])
            .arg("--target-dir")
            .arg(&target_dir),
    )?;
    let root = process::workspace_root();
    let bin_dir = target_dir.join(TARGET).join("release");
    let out = root.join("target/images");
    std::fs::create_dir_all(&out)?;
    let mut images = Vec::new();
    for spec in IMAGES {
        let reference = format!("{REPOSITORY}/{}:{TAG}", spec.name);
        let archive = out.join(format!("{}.tar", spec.name));
        let size = write_archive(&archive, &reference, &bin_dir.join(spec.name), spec)?;
        eprintln!(
            "xtask: image {reference}: {:.1} MB uncompressed ({})",
            size as f64 / 1e6,
            archive.display()
        );
        if size >= MAX_IMAGE_BYTES {
            bail!(
                "the {} image is {:.1} MB; images must stay under {} MB",
                spec.name,
                size as f64 / 1e6,
                MAX_IMAGE_BYTES / 1_000_000
            );
        }
        images.push(Image {
            reference,
            archive,
            size,
        });
        // The same release binary beside the archives, for the browser test's benchmark figures (what the
        // demo and the cluster run, not the tests' debug builds): a copy, since the build directory is
        // shared by every clone on the machine.
        let bin = out.join("bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::copy(bin_dir.join(spec.name), bin.join(spec.name))?;
    }
    eprintln!("xtask: images built in {:.0} s", started.elapsed().as_secs_f64());
    Ok(images)
}

/// The pod sandbox image of the test node, `localhost/pause:resume-showcase`, from the `pause` binary that
/// `cargo xtask cluster-tools` compiles (registry.k8s.io cannot be reached here), as `target/images/pause.tar`.
pub fn pause(k8s_bin: &Path) -> anyhow::Result<Image> {
    let reference = "localhost/pause:resume-showcase".to_owned();
    let archive = process::workspace_root().join("target/images/pause.tar");
    std::fs::create_dir_all(archive.parent().context("no parent")?)?;
    let spec = Spec {
        name: "pause",
        port: None,
    };
    let size = write_archive(&archive, &reference, &k8s_bin.join("pause"), &spec)?;
    Ok(Image {
        reference,
        archive,
        size,
    })
}

/// rustup's musl target, and Debian's musl-tools for the C code some dependencies compile (ring).
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false);
    if !installed {
        eprintln!("xtask: adding the {TARGET} target with rustup (static binaries for the images)");
        process::run(Command::new("rustup").args(["target", "add", TARGET]))?;
    }
    crate::setup::ensure_apt(
        &[("musl-gcc", "musl-tools")],
        "the images' static binaries have C dependencies (ring)",
    )
}

/// The files of the base: what distroless/static's nonroot variant gives a static binary.
fn base_files() -> anyhow::Result<Vec<(String, Vec<u8>, u32)>> {
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{USER}:\n");
    let certificates = std::fs::read("/etc/ssl/certs/ca-certificates.crt")
        .context("/etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates) is needed for the images")?;
    Ok(vec![
        ("etc/passwd".into(), passwd.into_bytes(), 0o644),
        ("etc/group".into(), group.into_bytes(), 0o644),
        ("etc/ssl/certs/ca-certificates.crt".into(), certificates, 0o644),
    ])
}

/// The one layer: the base files, `/tmp`, `/home/nonroot` and the binary.
fn layer(binary: &Path, spec: &Spec) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let directory = |builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, owner: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_uid(owner.into());
        header.set_gid(owner.into());
        header.set_mtime(0);
        header.set_size(0);
        builder.append_data(&mut header, path, std::io::empty())
    };
    for dir in ["etc", "etc/ssl", "etc/ssl/certs"] {
        directory(&mut builder, dir, 0o755, 0)?;
    }
    directory(&mut builder, "tmp", 0o1777, 0)?;
    directory(&mut builder, "home", 0o755, 0)?;
    directory(&mut builder, "home/nonroot", 0o700, USER)?;
    let mut files = base_files()?;
    let program = std::fs::read(binary).with_context(|| format!("{} was not built", binary.display()))?;
    files.push((spec.name.to_owned(), program, 0o755));
    for (path, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data.as_slice())?;
    }
    Ok(builder.into_inner()?)
}

fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Writes the OCI archive of `spec` at `archive`; returns the layer's size.
fn write_archive(archive: &Path, reference: &str, binary: &Path, spec: &Spec) -> anyhow::Result<u64> {
    let layer = layer(binary, spec)?;
    let layer_digest = digest(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": format!("{USER}:{USER}"),
            "Entrypoint": [format!("/{}", spec.name)],
            "ExposedPorts": spec.port.map(|port| serde_json::json!({format!("{port}/tcp"): {}})),
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))?;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": reference,
            },
        }],
    }))?;
    let mut builder = tar::Builder::new(std::fs::File::create(archive)?);
    let mut add = |path: String, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data)
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json".into(), &index)?;
    for blob in [&layer, &config, &manifest] {
        let hex = digest(blob);
        let hex = hex.trim_start_matches("sha256:");
        add(format!("blobs/sha256/{hex}"), blob)?;
    }
    builder.into_inner()?.flush()?;
    Ok(layer.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_has_the_layout_containerd_imports() {
        let dir = std::env::temp_dir().join(format!("xtask-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join("server");
        std::fs::write(&binary, b"\x7fELF not really").unwrap();
        let archive = dir.join("server.tar");
        let spec = &IMAGES[0];
        let size = write_archive(&archive, "example/server:t", &binary, spec).unwrap();
        let mut entries = std::collections::BTreeMap::new();
        let mut reader = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        for entry in reader.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            entries.insert(entry.path().unwrap().to_string_lossy().into_owned(), data);
        }
        let index: serde_json::Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        let manifest_ref = &index["manifests"][0];
        assert_eq!(
            manifest_ref["annotations"]["io.containerd.image.name"],
            "example/server:t"
        );
        let blob = |digest: &serde_json::Value| {
            let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
            entries[&format!("blobs/sha256/{hex}")].clone()
        };
        let manifest: serde_json::Value = serde_json::from_slice(&blob(&manifest_ref["digest"])).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"][0], "/server");
        let layer = blob(&manifest["layers"][0]["digest"]);
        assert_eq!(layer.len() as u64, size);
        assert_eq!(config["rootfs"]["diff_ids"][0], manifest["layers"][0]["digest"]);
        // The layer holds the user, the certificates and the binary.
        let mut files = Vec::new();
        for entry in tar::Archive::new(layer.as_slice()).entries().unwrap() {
            files.push(entry.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        for wanted in ["etc/passwd", "etc/ssl/certs/ca-certificates.crt", "server", "tmp"] {
            assert!(
                files.iter().any(|f| f.trim_end_matches('/') == wanted),
                "{wanted} in {files:?}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
