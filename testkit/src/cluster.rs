//! A real Kubernetes control plane for one test: etcd, kube-apiserver, kube-controller-manager (its Job
//! controller creates the pods of a Job, its garbage collector deletes them with the Job), kube-scheduler and
//! kwok (fake nodes that bind pods and report them Running and Ready, without running containers).
//!
//! The binaries come from `cargo xtask cluster-tools`, which builds them from Go modules once per version
//! and caches them outside the repository; `cargo xtask test` passes their directory in `SHOWCASE_K8S_BIN`.
//! `kwokctl --runtime binary` wires them together (certificates, flags, ports) in a private work directory.
//! [`Cluster`] deletes the cluster and its directory when dropped, also when the test panics.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde_json::json;

/// Nodes every cluster gets.
pub const NODES: usize = 2;

/// The directory holding kwokctl, kwok, etcd, the Kubernetes binaries and helm.
pub fn binaries() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    if let Some(bin) = BIN.get() {
        return Ok(bin.clone());
    }
    let bin = match std::env::var_os("SHOWCASE_K8S_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // Not under `cargo xtask test`: ask xtask (it builds them when missing, which takes a while).
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let output = std::process::Command::new(cargo)
                .args(["run", "--quiet", "-p", "xtask", "--", "cluster-tools"])
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("cannot run `cargo xtask cluster-tools`")?;
            if !output.status.success() {
                bail!("`cargo xtask cluster-tools` failed: the Kubernetes test binaries are missing");
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            PathBuf::from(
                stdout
                    .lines()
                    .last()
                    .context("cluster-tools printed nothing")?
                    .trim(),
            )
        }
    };
    for tool in [
        "kwokctl",
        "kwok",
        "etcd",
        "kube-apiserver",
        "helm",
        "kwok-stages.yaml",
    ] {
        if !bin.join(tool).is_file() {
            bail!(
                "{} is missing: run `cargo xtask cluster-tools`",
                bin.join(tool).display()
            );
        }
    }
    Ok(BIN.get_or_init(|| bin).clone())
}

/// A running control plane with [`NODES`] ready kwok nodes.
pub struct Cluster {
    processes: Processes,
    /// A client with cluster-admin rights (for setting up and inspecting; code under test gets less).
    pub admin: Client,
}

/// The kwokctl cluster's processes and files; deleted on drop.
struct Processes {
    name: String,
    workdir: PathBuf,
    bin: PathBuf,
    kubeconfig: PathBuf,
}

/// How [`Cluster::start_with`] sets a cluster up.
pub struct Options {
    /// More kwokctl configuration (a `KwokctlConfiguration` document); `{pki}` in it stands for the cluster's
    /// certificate directory.
    pub kwokctl_config: Option<String>,
    /// The API server's port (default: one kwokctl picks).
    pub apiserver_port: Option<u16>,
    /// Fake kwok nodes to add and wait for.
    pub fake_nodes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            kwokctl_config: None,
            apiserver_port: None,
            fake_nodes: NODES,
        }
    }
}

impl Cluster {
    /// Starts a fresh cluster with [`NODES`] kwok nodes (a few seconds).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Options::default()).await
    }

    /// Starts a fresh cluster set up by `options`.
    pub async fn start_with(options: Options) -> anyhow::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        // kwokctl picks free ports as it starts each component; two clusters starting at once in this
        // process could pick the same ones.
        static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = STARTING.lock().await;
        let bin = binaries()?;
        let name = format!(
            "showcase-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let workdir = std::env::temp_dir().join(format!("kwok-{name}"));
        std::fs::create_dir_all(&workdir)?;
        let kubeconfig = workdir.join("kubeconfig.yaml");
        let binary = |flag: &str, tool: &str| [flag.to_owned(), bin.join(tool).display().to_string()];
        let mut command = tokio::process::Command::new(bin.join("kwokctl"));
        command
            .env("KWOK_WORKDIR", &workdir)
            .args(["create", "cluster", "--name", &name, "--runtime", "binary"])
            .args(binary("--kube-apiserver-binary", "kube-apiserver"))
            .args(binary(
                "--kube-controller-manager-binary",
                "kube-controller-manager",
            ))
            .args(binary("--kube-scheduler-binary", "kube-scheduler"))
            .args(binary("--etcd-binary", "etcd"))
            .args(binary("--kwok-controller-binary", "kwok"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            // kwok's stages without `pod-complete`, so Job pods keep running (see xtask's cluster module).
            .arg("--config")
            .arg(bin.join("kwok-stages.yaml"))
            .args(["--wait", "90s", "--disable-qps-limits"]);
        if let Some(config) = &options.kwokctl_config {
            let pki = workdir.join("clusters").join(&name).join("pki");
            let file = workdir.join("kwokctl-extra.yaml");
            std::fs::write(&file, config.replace("{pki}", &pki.display().to_string()))?;
            command.arg("--config").arg(file);
        }
        if let Some(port) = options.apiserver_port {
            command.args(["--kube-apiserver-port", &port.to_string()]);
        }
        // From here on, dropping `processes` cleans up whatever got started.
        let processes = Processes {
            name,
            workdir,
            bin,
            kubeconfig,
        };
        let output = command.output().await.context("cannot run kwokctl")?;
        if !output.status.success() {
            bail!(
                "kwokctl create cluster failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // kwokctl logs a failed `--wait` and still exits 0; its words go with any later failure.
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        let admin = client_from(&processes.kubeconfig).await?;
        let cluster = Self { processes, admin };
        cluster
            .wait_for("the API server to answer", || async {
                cluster.admin.apiserver_version().await?;
                Ok(true)
            })
            .await
            .map_err(|e| {
                cluster
                    .explain(e, &["kube-apiserver", "etcd"])
                    .context(format!("kwokctl said:\n{}", said.trim_end()))
            })?;
        cluster.add_nodes(options.fake_nodes).await?;
        Ok(cluster)
    }

    async fn add_nodes(&self, count: usize) -> anyhow::Result<()> {
        if count == 0 {
            return Ok(());
        }
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let resources = json!({"cpu": "32", "memory": "256Gi", "pods": "110"});
        for i in 0..count {
            let name = format!("kwok-node-{i}");
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
                },
                "status": {"allocatable": resources, "capacity": resources},
            }))?;
            nodes.create(&PostParams::default(), &node).await?;
        }
        // The scheduler only binds to nodes kwok has reported Ready.
        self.wait_for("every node ready", || async {
            let list = nodes.list(&Default::default()).await?;
            Ok(list.items.iter().filter(|n| node_ready(n)).count() == count)
        })
        .await
    }

    /// Polls `check` every 100 ms until it is true (bounded by 60 s). For conditions on cluster state that
    /// no single watch event announces.
    pub async fn wait_for<F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut last_error = None;
        loop {
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting for {what} (last error: {last_error:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `error`, with the last lines of the logs of `components` (kwokctl's names: `kube-apiserver`, `etcd`...).
    pub fn explain(&self, error: anyhow::Error, components: &[&str]) -> anyhow::Error {
        let logs = self
            .processes
            .workdir
            .join("clusters")
            .join(&self.processes.name)
            .join("logs");
        components.iter().fold(error, |error, component| {
            let log = std::fs::read_to_string(logs.join(format!("{component}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            error.context(format!("{component}'s last log lines:\n{}", tail.join("\n")))
        })
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.processes.kubeconfig
    }

    /// The cluster's certificate directory (`ca.crt`, `ca.key`, `admin.crt`, ...).
    pub fn pki_dir(&self) -> PathBuf {
        self.processes
            .workdir
            .join("clusters")
            .join(&self.processes.name)
            .join("pki")
    }

    /// The API server's version, e.g. `v1.36.3` (for `helm template --kube-version`).
    pub async fn version(&self) -> anyhow::Result<String> {
        Ok(self.admin.apiserver_version().await?.git_version)
    }

    /// Creates namespace `name`.
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(self.admin.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(())
    }

    /// Runs helm against this cluster; returns its stdout, or fails with its stderr.
    pub async fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        let p = &self.processes;
        let mut all: Vec<&str> = args.to_vec();
        let kubeconfig = p.kubeconfig.display().to_string();
        all.extend(["--kubeconfig", &kubeconfig]);
        helm_in(&p.workdir.join("helm"), &all).await
    }

    /// Server-side dry-run of every object of a YAML stream with strict field validation: the API server
    /// checks each against its schemas (unknown or misspelt fields included) and stores nothing.
    pub async fn validate_yaml(&self, namespace: &str, yaml: &str) -> anyhow::Result<usize> {
        let mut params = PatchParams::apply("testkit").force().validation_strict();
        params.dry_run = true;
        Ok(self.apply_with(namespace, yaml, &params).await?.len())
    }

    /// Server-side-applies every object of a multi-document YAML stream (e.g. `helm template` output) into
    /// `namespace` (cluster-scoped objects ignore it).
    pub async fn apply_yaml(&self, namespace: &str, yaml: &str) -> anyhow::Result<Vec<DynamicObject>> {
        self.apply_with(namespace, yaml, &PatchParams::apply("testkit").force())
            .await
    }

    async fn apply_with(
        &self,
        namespace: &str,
        yaml: &str,
        params: &PatchParams,
    ) -> anyhow::Result<Vec<DynamicObject>> {
        let documents: Vec<Option<DynamicObject>> =
            serde_saphyr::from_multiple(yaml).context("parsing the YAML stream")?;
        let mut applied = Vec::new();
        for object in documents.into_iter().flatten() {
            let types = object
                .types
                .clone()
                .context("an object without apiVersion/kind")?;
            let gvk = kube::api::GroupVersionKind::try_from(&types)?;
            let (resource, capabilities) = discovery::pinned_kind(&self.admin, &gvk).await?;
            let api: Api<DynamicObject> = match capabilities.scope {
                Scope::Namespaced => Api::namespaced_with(self.admin.clone(), namespace, &resource),
                Scope::Cluster => Api::all_with(self.admin.clone(), &resource),
            };
            let name = object.name_any();
            let result = api.patch(&name, params, &Patch::Apply(&object)).await;
            applied.push(result.with_context(|| format!("{} {name}", gvk.kind))?);
        }
        Ok(applied)
    }

    /// Creates `namespace` with the Helm chart's provisioner RBAC (ServiceAccount, Role, RoleBinding of release
    /// `release`, rendered by Helm from `chart`) and returns the ServiceAccount's name.
    pub async fn with_provisioner_rbac(
        &self,
        namespace: &str,
        release: &str,
        chart: &Path,
    ) -> anyhow::Result<String> {
        self.create_namespace(namespace).await?;
        let version = self.version().await?;
        let chart = chart.display().to_string();
        let rbac = self
            .helm(&[
                "template",
                release,
                &chart,
                "--namespace",
                namespace,
                "--show-only",
                "templates/provisioner-rbac.yaml",
                "--kube-version",
                &version,
            ])
            .await?;
        let applied = self.apply_yaml(namespace, &rbac).await?;
        anyhow::ensure!(
            applied.len() == 3,
            "expected ServiceAccount, Role and RoleBinding"
        );
        Ok(format!("{release}-resume-showcase-provisioner"))
    }

    /// A client that authenticates as service account `namespace/name` (a short-lived bound token), so the
    /// code under test gets exactly the rights RBAC gives that account.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> anyhow::Result<Client> {
        let path = self.service_account_kubeconfig(namespace, name).await?;
        client_from(&path).await
    }

    /// A kubeconfig file for service account `namespace/name` (for a binary under test: `KUBECONFIG=…`).
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> anyhow::Result<PathBuf> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?
            .status
            .context("the token request has no status")?
            .token;
        let admin = Kubeconfig::read_from(self.kubeconfig())?;
        let cluster = admin
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .context("the kubeconfig has no cluster")?;
        let yaml = serde_json::to_string(&json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kwok", "cluster": {
                "server": cluster.server,
                "certificate-authority": cluster.certificate_authority,
            }}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "kwok", "user": name, "namespace": namespace}}],
            "current-context": name,
        }))?;
        let path = self
            .processes
            .workdir
            .join(format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }
}

/// Runs helm without a cluster (lint, template); returns its stdout, or fails with its stderr.
pub async fn helm(args: &[&str]) -> anyhow::Result<String> {
    helm_in(&std::env::temp_dir().join("showcase-helm"), args).await
}

async fn helm_in(home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(binaries()?.join("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .await
        .context("cannot run helm")?;
    if !output.status.success() {
        bail!(
            "helm {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Whether the node reports its `Ready` condition true.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Drop for Processes {
    fn drop(&mut self) {
        let deleted = std::process::Command::new(self.bin.join("kwokctl"))
            .env("KWOK_WORKDIR", &self.workdir)
            .args(["delete", "cluster", "--name", &self.name, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .output();
        match deleted {
            Ok(out) if out.status.success() => {
                let _ = std::fs::remove_dir_all(&self.workdir);
            }
            other => eprintln!(
                "testkit: could not delete cluster {} ({other:?}); its files stay in {}",
                self.name,
                self.workdir.display()
            ),
        }
    }
}
