//! Traefik, the ingress controller the chart is written for, on the host in front of a real node
//! ([`crate::node`]): the production route (ingress → provisioner Service, ingress → edge Service → session
//! pod) for the real-node tests and benchmarks.
//!
//! It runs as a user would run it beside the chart: the provider of the chart's `ingress.kind` ([`Routes`]:
//! the Kubernetes Ingress provider, or the CRD provider for Traefik's own `IngressRoute`, with Traefik's CRDs
//! installed first), limited to one namespace, as a ServiceAccount with a ClusterRole of read rights only (a
//! bound token in a kubeconfig), the `traefik` IngressClass, and TLS from the `kubernetes.io/tls` Secret the
//! chart's Ingress names ([`Traefik::install_certificate`] writes it, as cert-manager would). Its entry points
//! are named and set as in Traefik's own chart: `websecure` with TLS on every router (an Ingress's `tls`
//! section only hands Traefik certificates), or `web` for plain HTTP; a second one, on a free loopback port,
//! answers `/ping` only. The binary and the CRDs come from `cargo xtask cluster-tools` (see
//! `xtask/src/traefik.rs`).
//! The process is killed when the [`Traefik`] is dropped; its log stays in the node's directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt};

use crate::node::NodeCluster;
use crate::tls::TestCertificate;

/// Where Traefik's ServiceAccount lives.
const ACCOUNT_NAMESPACE: &str = "kube-system";
const ACCOUNT: &str = "traefik";

/// What Traefik's Kubernetes Ingress provider reads, and the IngressClass the chart names by default.
const RBAC: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: traefik, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: testkit-traefik}
rules:
- {apiGroups: [""], resources: [services, secrets, nodes, configmaps], verbs: [get, list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}
- {apiGroups: [networking.k8s.io], resources: [ingresses, ingressclasses], verbs: [get, list, watch]}
- apiGroups: [traefik.io]
  resources: [ingressroutes, ingressroutetcps, ingressrouteudps, middlewares, middlewaretcps, serverstransports,
    serverstransporttcps, tlsoptions, tlsstores, traefikservices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: testkit-traefik}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: testkit-traefik}
subjects: [{kind: ServiceAccount, name: traefik, namespace: kube-system}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}
"#;

/// Traefik's CRDs (from its module, by `cargo xtask cluster-tools`), beside the binary.
const CRDS: &str = "traefik-crds.yml";

/// Which kind of object carries the chart's routes (its `ingress.kind`), and so which provider reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// A standard `Ingress`: Traefik's `kubernetesIngress` provider.
    Ingress,
    /// Traefik's `IngressRoute`: its `kubernetesCRD` provider, with its CRDs installed.
    IngressRoute,
}

/// A running Traefik; stops when dropped.
pub struct Traefik {
    /// Where it serves the Ingresses.
    pub address: SocketAddr,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Traefik {
    /// Starts Traefik serving the `routes` of `namespace` on `bind`, over TLS when `tls`, and waits until it
    /// answers its ping. Several may run at once, on different addresses.
    pub async fn start(
        node: &NodeCluster,
        namespace: &str,
        bind: SocketAddr,
        tls: bool,
        routes: Routes,
    ) -> anyhow::Result<Self> {
        let bin = crate::cluster::binaries()?;
        let binary = bin.join("traefik");
        if !binary.is_file() {
            bail!(
                "no Traefik at {}: `cargo xtask cluster-tools` builds it",
                binary.display()
            );
        }
        let cluster = &node.cluster;
        cluster.apply_yaml(ACCOUNT_NAMESPACE, RBAC).await?;
        if routes == Routes::IngressRoute {
            install_crds(node, &bin.join(CRDS)).await?;
        }
        let kubeconfig = cluster
            .service_account_kubeconfig(ACCOUNT_NAMESPACE, ACCOUNT)
            .await?;
        let ping = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let name = format!("traefik-{}-{}", bind.ip(), bind.port());
        let config = node.dir().join(format!("{name}.yml"));
        std::fs::write(&config, static_config(namespace, bind, tls, routes, ping))?;
        let log = node.dir().join(format!("logs/{name}.log"));
        let output = std::fs::File::create(&log)?;
        let mut child = tokio::process::Command::new(&binary)
            .arg(format!("--configFile={}", config.display()))
            // Its client takes the kubeconfig from KUBECONFIG, unless it thinks it runs in a pod.
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let url = format!("http://{ping}/ping");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Traefik exited ({status}) before answering its ping: {}",
                    tail(&log)
                );
            }
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("Traefik did not answer {url} within 30 s: {}", tail(&log));
            }
            // Traefik announces nothing a test could await but this answer: poll it, bounded.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            address: bind,
            child,
            log,
        })
    }

    /// Writes the TLS Secret that Ingress `ingress` of `namespace` names, with `certificate` (what
    /// cert-manager does in production); returns the Secret's name.
    pub async fn install_certificate(
        node: &NodeCluster,
        namespace: &str,
        ingress: &str,
        certificate: &TestCertificate,
    ) -> anyhow::Result<String> {
        let client = node.cluster.admin.clone();
        let found = Api::<Ingress>::namespaced(client.clone(), namespace)
            .get(ingress)
            .await?;
        let name = found
            .spec
            .and_then(|s| s.tls)
            .and_then(|tls| tls.into_iter().find_map(|t| t.secret_name))
            .with_context(|| format!("Ingress {namespace}/{ingress} names no TLS Secret"))?;
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [("tls.crt", &certificate.pem), ("tls.key", &certificate.key_pem)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        Api::<Secret>::namespaced(client, namespace)
            .patch(
                &name,
                &PatchParams::apply("testkit").force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(name)
    }

    /// The last lines of Traefik's log, for a failure message.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Applies Traefik's CRDs from `file` and waits until the API server serves each.
async fn install_crds(node: &NodeCluster, file: &std::path::Path) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(file).with_context(|| {
        format!(
            "reading {}: `cargo xtask cluster-tools` writes it",
            file.display()
        )
    })?;
    let applied = node.cluster.apply_yaml("default", &yaml).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(node.cluster.admin.clone());
    for crd in &applied {
        let name = crd.name_any();
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(crate::wait::WAIT, established)
            .await
            .with_context(|| format!("CRD {name} not established within {:?}", crate::wait::WAIT))??;
    }
    Ok(())
}

/// Traefik's static configuration: one entry point on `bind` for the routes (TLS on every router when
/// `tls`), the ping on `ping`, the provider of `routes` limited to `namespace`.
fn static_config(namespace: &str, bind: SocketAddr, tls: bool, routes: Routes, ping: SocketAddr) -> String {
    let provider = match routes {
        Routes::Ingress => "kubernetesIngress",
        Routes::IngressRoute => "kubernetesCRD",
    };
    let (entry_point, http) = if tls {
        ("websecure", "\n    http: {tls: {}}")
    } else {
        ("web", "")
    };
    format!(
        r#"global: {{checkNewVersion: false, sendAnonymousUsage: false}}
log: {{level: WARN, noColor: true}}
entryPoints:
  {entry_point}:
    address: "{bind}"{http}
    # The Ingress's routers go here only, not to the ping's entry point.
    asDefault: true
    # Traefik's default waits 10 s for connections on shutdown; a test's teardown need not.
    transport: {{lifeCycle: {{graceTimeOut: 1s}}}}
  ping:
    address: "{ping}"
ping: {{entryPoint: ping}}
providers:
  {provider}:
    namespaces: ["{namespace}"]
    # Apply every change at once (the default as well; said here because the tests depend on it).
    throttleDuration: 0s
"#
    )
}

fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_configuration_parses_as_yaml_with_the_values_given() {
        let bind = "127.0.0.1:443".parse().unwrap();
        let ping = "127.0.0.1:9000".parse().unwrap();
        let parsed: serde_json::Value =
            serde_saphyr::from_str(&static_config("showcase", bind, true, Routes::Ingress, ping)).unwrap();
        assert_eq!(parsed["entryPoints"]["websecure"]["address"], "127.0.0.1:443");
        assert!(parsed["entryPoints"]["websecure"]["http"]["tls"].is_object());
        assert_eq!(parsed["entryPoints"]["websecure"]["asDefault"], true);
        assert_eq!(parsed["ping"]["entryPoint"], "ping");
        assert_eq!(
            parsed["providers"]["kubernetesIngress"]["namespaces"][0],
            "showcase"
        );
        let plain: serde_json::Value = serde_saphyr::from_str(&static_config(
            "showcase",
            bind,
            false,
            Routes::IngressRoute,
            ping,
        ))
        .unwrap();
        assert_eq!(plain["entryPoints"]["web"]["address"], "127.0.0.1:443");
        assert!(plain["entryPoints"]["web"]["http"].is_null());
        assert_eq!(plain["providers"]["kubernetesCRD"]["namespaces"][0], "showcase");
        assert!(plain["providers"]["kubernetesIngress"].is_null());
    }
}
