//! Traefik, the ingress controller the chart is written for, built from its Go module for the real-node tests
//! and benchmarks, and cached outside the repository by version (`~/.cache/resume-showcase/traefik-<version>`).
//!
//! Traefik's go.mod has `replace` directives, which `go install` refuses, so the build is a wrapper module that
//! requires `github.com/traefik/traefik/v3` and copies its `replace` and `exclude` lines. Three of its
//! dependencies are not served by the module proxies these machines reach, and are worked around in the
//! wrapper (the test never uses what they give):
//! - `github.com/traefik/traefik/dynamic/ext` is a nested module that is neither in Traefik's zip nor on the
//!   proxy; upstream it holds empty extension types, and the wrapper writes the same stub;
//! - 14 SDKs behind lego's ACME DNS-01 providers are refused: lego is copied into the wrapper with a
//!   `providers/dns` that only answers "not compiled in" (no DNS-01 certificates; the tests bring their own);
//! - the `containous/go-http-auth` version Traefik pins is refused: an older version of the same fork is used.
//!
//! Traefik's CRDs (for the chart's `IngressRoute` kind) are copied out of the same module into the cache
//! beside the binary, and both are linked into the Kubernetes binaries' directory.
//!
//! Measured here with empty Go caches: 11.7 minutes (module downloads and compilation), 1.0 GiB of modules and
//! 1.8 GiB of build cache besides the 144 MB binary; nothing once the binary and the CRDs are cached (the CRDs
//! alone, missing from an older cache, cost one module download).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{disk, process};

/// The Traefik release (the v3 line the chart's `IngressRoute` and annotations are written for).
pub const TRAEFIK: &str = "v3.7.13";

/// Free space a cold build needs (measured: 2.9 GiB with the Go caches empty).
const BUILD_SPACE: u64 = 3 * disk::GIB;

/// Modules behind lego's DNS-01 providers that the proxy refuses; dropped from the copied lego's go.mod.
const DNS_PROVIDER_SDKS: &[&str] = &[
    "github.com/akamai/AkamaiOPEN-edgegrid-golang/v13",
    "github.com/aziontech/azionapi-go-sdk",
    "github.com/dnsimple/dnsimple-go/v9",
    "github.com/go-acme/alidns-20150109/v5",
    "github.com/go-acme/esa-20240910/v3",
    "github.com/go-acme/tencentclouddnspod",
    "github.com/go-acme/tencentedgdeone",
    "github.com/huaweicloud/huaweicloud-sdk-go-v3",
    "github.com/nrdcg/oci-go-sdk/common/v1065",
    "github.com/nrdcg/oci-go-sdk/dns/v1065",
    "github.com/regfish/regfish-dnsapi-go",
    "github.com/sacloud/sacloud-sdk-go",
    "github.com/ucloud/ucloud-sdk-go",
    "github.com/yandex-cloud/go-sdk/services/dns",
];
const EXT_MODULE: &str = "github.com/traefik/traefik/dynamic/ext";
const LEGO: &str = "github.com/go-acme/lego/v5";
const HTTP_AUTH: &str = "github.com/abbot/go-http-auth";
const HTTP_AUTH_SERVED: &str = "github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e";

/// Traefik's CRDs (`IngressRoute` and the rest its CRD provider watches), as its module ships them.
const CRDS_IN_MODULE: &str = "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml";
/// Their name in the cache and in the Kubernetes binaries' directory (`testkit::traefik` reads it there).
const CRDS: &str = "traefik-crds.yml";

/// Builds the binary when it is not cached, copies the CRDs out of the module when they are not, and links
/// both into the Kubernetes binaries' directory `k8s_bin` (where the tests look for every cluster tool,
/// [`crate::cluster::ensure_binaries`]).
pub fn ensure(k8s_bin: &Path) -> anyhow::Result<()> {
    let cache = crate::process::cache_root()?.join(format!("traefik-{TRAEFIK}"));
    let binary = build(&cache)?;
    let crds = crds(&cache)?;
    for (target, name) in [(&binary, "traefik"), (&crds, CRDS)] {
        let link = k8s_bin.join(name);
        if std::fs::read_link(&link).is_ok_and(|t| &t == target) {
            continue;
        }
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
    }
    Ok(())
}

/// The cached CRDs, copied from Traefik's module first when missing (a download of that module alone when
/// Go's module cache does not have it).
fn crds(cache: &Path) -> anyhow::Result<PathBuf> {
    let crds = cache.join(CRDS);
    if crds.is_file() {
        return Ok(crds);
    }
    let go = crate::go::ensure().context("Traefik's CRDs come from its Go module")?;
    std::fs::create_dir_all(cache)?;
    let traefik = module(&go, cache)?;
    let source = traefik.join(CRDS_IN_MODULE);
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("Traefik's module has no {CRDS_IN_MODULE}"))?;
    if !text.contains("name: ingressroutes.traefik.io") {
        bail!("{} does not define the IngressRoute CRD", source.display());
    }
    let partial = cache.join(format!("{CRDS}.partial"));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &crds)?;
    Ok(crds)
}

/// Traefik's module at [`TRAEFIK`] in Go's module cache (downloaded when missing), with `go` run in `dir`.
fn module(go: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    crate::go::module_dir(crate::go::command(go, dir).args([
        "mod",
        "download",
        "-json",
        &format!("github.com/traefik/traefik/v3@{TRAEFIK}"),
    ]))
}

/// The cached binary under `cache`, built first when missing.
fn build(cache: &Path) -> anyhow::Result<PathBuf> {
    let binary = cache.join("bin/traefik");
    if binary.is_file() {
        return Ok(binary);
    }
    let go = crate::go::ensure().context("Traefik is built with Go")?;
    disk::ensure_free(cache, BUILD_SPACE, "building Traefik")?;
    let src = cache.join("module");
    std::fs::create_dir_all(&src)?;
    let traefik = module(&go, &src)?;
    let go = |dir: &Path| crate::go::command(&go, dir);
    let upstream: Value = serde_json::from_str(&process::output(
        go(&src)
            .args(["mod", "edit", "-json"])
            .arg(traefik.join("go.mod")),
    )?)?;

    write_ext_stub(&src.join("ext"))?;
    std::fs::write(src.join("go.mod"), wrapper_go_mod(&upstream)?)?;

    let lego_version = upstream["Require"]
        .as_array()
        .and_then(|r| r.iter().find(|m| m["Path"] == LEGO))
        .and_then(|m| m["Version"].as_str())
        .with_context(|| format!("Traefik's go.mod does not require {LEGO}"))?;
    let lego = crate::go::module_dir(go(&src).args([
        "mod",
        "download",
        "-json",
        &format!("{LEGO}@{lego_version}"),
    ]))?;
    let local_lego = src.join("lego");
    if local_lego.exists() {
        std::fs::remove_dir_all(&local_lego)?;
    }
    crate::go::copy_tree(&lego, &local_lego)?;
    std::fs::write(
        local_lego.join("providers/dns/zz_gen_dns_providers.go"),
        DNS_PROVIDERS_STUB,
    )?;
    let mut drop = go(&local_lego);
    drop.args(["mod", "edit"]);
    for sdk in DNS_PROVIDER_SDKS {
        drop.arg(format!("-droprequire={sdk}"));
    }
    process::run(&mut drop)?;
    process::run(go(&src).args([
        "mod",
        "edit",
        &format!("-replace={LEGO}=./lego"),
        &format!("-replace={HTTP_AUTH}={HTTP_AUTH_SERVED}"),
    ]))?;
    std::fs::write(
        src.join("tools.go"),
        "//go:build tools\n\npackage tools\n\nimport _ \"github.com/traefik/traefik/v3/cmd/traefik\"\n",
    )?;
    process::run(go(&src).args(["mod", "tidy"]))?;
    let staging = cache.join("bin/traefik.partial");
    process::run(
        go(&src)
            .args([
                "build",
                "-ldflags",
                &format!("-s -w -X github.com/traefik/traefik/v3/pkg/version.Version={TRAEFIK}"),
                "-o",
            ])
            .arg(&staging)
            .arg("github.com/traefik/traefik/v3/cmd/traefik"),
    )?;
    std::fs::rename(&staging, &binary)?;
    Ok(binary)
}

/// The wrapper's go.mod from Traefik's own (`go mod edit -json`): its Go version, a requirement on Traefik,
/// its `replace` lines (the nested `ext` module to the local stub) and `exclude` lines.
fn wrapper_go_mod(upstream: &Value) -> anyhow::Result<String> {
    let go_version = upstream["Go"]
        .as_str()
        .context("Traefik's go.mod names no Go version")?;
    let mut out = format!(
        "module showcase.local/traefik\n\ngo {go_version}\n\nrequire github.com/traefik/traefik/v3 {TRAEFIK}\n\n"
    );
    let versioned = |module: &Value| match module["Version"].as_str() {
        Some(version) => format!("{} {version}", module["Path"].as_str().unwrap_or_default()),
        None => module["Path"].as_str().unwrap_or_default().to_owned(),
    };
    for replace in upstream["Replace"].as_array().into_iter().flatten() {
        let old = versioned(&replace["Old"]);
        let new_path = replace["New"]["Path"].as_str().unwrap_or_default();
        let new = if new_path.starts_with('.') {
            if replace["Old"]["Path"] != EXT_MODULE {
                bail!("Traefik's go.mod replaces {old} with a local path the wrapper does not know");
            }
            "./ext".to_owned()
        } else {
            versioned(&replace["New"])
        };
        out.push_str(&format!("replace {old} => {new}\n"));
    }
    for exclude in upstream["Exclude"].as_array().into_iter().flatten() {
        out.push_str(&format!("exclude {}\n", versioned(exclude)));
    }
    Ok(out)
}

/// The nested `dynamic/ext` module as upstream has it: empty extension types.
fn write_ext_stub(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("go.mod"), format!("module {EXT_MODULE}\n\ngo 1.24.0\n"))?;
    std::fs::write(
        dir.join("ext.go"),
        "// Package ext holds Traefik's extension points; empty, as upstream.\npackage ext\n\n\
         // HTTP is a dynamic.HTTP extension.\ntype HTTP struct{}\n\n\
         // Router is a dynamic.Router extension.\ntype Router struct{}\n\n\
         // RouterIng is a router extension from ingress annotations.\ntype RouterIng struct{}\n\n\
         // ToRouter converts RouterIng to a Router.\nfunc (r RouterIng) ToRouter() Router { return Router{} }\n",
    )?;
    Ok(())
}

/// lego's `providers/dns` without its providers.
const DNS_PROVIDERS_STUB: &str = "// Package dns: the DNS-01 providers are not compiled into this build.\npackage dns\n\n\
import (\n\t\"fmt\"\n\n\t\"github.com/go-acme/lego/v5/challenge\"\n)\n\n\
// NewDNSChallengeProviderByName fails: no DNS-01 provider is compiled into this build.\n\
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {\n\
\treturn nil, fmt.Errorf(\"DNS challenge provider %q is not compiled into this traefik build\", name)\n}\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_copies_replaces_and_excludes_and_points_ext_at_the_stub() {
        let upstream = serde_json::json!({
            "Go": "1.26.0",
            "Replace": [
                {"Old": {"Path": EXT_MODULE}, "New": {"Path": "./pkg/config/dynamic/ext"}},
                {"Old": {"Path": "github.com/a/b", "Version": "v1.0.0"}, "New": {"Path": "github.com/c/b", "Version": "v1.1.0"}},
            ],
            "Exclude": [{"Path": "github.com/x/y", "Version": "v0.1.0"}],
        });
        let go_mod = wrapper_go_mod(&upstream).unwrap();
        assert!(go_mod.contains("\ngo 1.26.0\n"), "{go_mod}");
        assert!(go_mod.contains(&format!("require github.com/traefik/traefik/v3 {TRAEFIK}\n")));
        assert!(
            go_mod.contains(&format!("replace {EXT_MODULE} => ./ext\n")),
            "{go_mod}"
        );
        assert!(go_mod.contains("replace github.com/a/b v1.0.0 => github.com/c/b v1.1.0\n"));
        assert!(go_mod.contains("exclude github.com/x/y v0.1.0\n"));
    }

    #[test]
    fn an_unknown_local_replace_is_refused() {
        let upstream = serde_json::json!({
            "Go": "1.26.0",
            "Replace": [{"Old": {"Path": "github.com/a/b"}, "New": {"Path": "../b"}}],
        });
        let error = wrapper_go_mod(&upstream).unwrap_err().to_string();
        assert!(error.contains("github.com/a/b"), "{error}");
    }
}
