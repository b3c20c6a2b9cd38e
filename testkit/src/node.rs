//! A real Kubernetes node for one test, joined to a control plane of [`crate::cluster`]: the packaged containerd
//! (Debian's 1.6, or Docker's 1.7/2.x on GitHub's runners), runc and CNI plugins run real containers, on cgroup
//! v1 or v2; kubelet and kube-proxy come from `cargo xtask cluster-tools`
//! (built from the same Go module as the control plane). [`NodeCluster`] starts it all and tears it all down
//! when dropped, also when the test panics: processes, containers, network namespaces, mounts, the bridge,
//! routes, iptables rules, cgroups, and the sysctls the kubelet and the bridge plugin change.
//!
//! Everything stays on this machine, inside ranges chosen to collide with nothing here:
//! - the bridge [`BRIDGE`] holds [`GATEWAY`], which is also the node's address and the API server's
//!   advertised address (pods reach the API server through the `kubernetes` Service, [`API_SERVICE`]);
//! - pods get [`POD_CIDR`], Services [`SERVICE_CIDR`]; nothing is forwarded between the bridge and any other
//!   interface, and the API server's port and [`GATEWAY`] take packets only from loopback and the bridge;
//! - there is no cluster DNS: pods find the API server by `KUBERNETES_SERVICE_HOST`.
//!
//! One node runs at a time on a machine (a file lock): the kubelet hard-codes some host paths.
//! What it needs (root, cgroups, the Debian packages) is checked first and reported in one sentence.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;

use crate::cluster::{self, Cluster, Options};

/// The node's bridge.
pub const BRIDGE: &str = "rsnode0";
/// The bridge's address: the node IP, the pods' gateway, the API server's advertised address.
pub const GATEWAY: &str = "10.246.0.1";
/// The real node's pods.
pub const POD_CIDR: &str = "10.246.0.0/24";
/// Services' cluster IPs.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service (the API server, from pods).
pub const API_SERVICE: &str = "10.96.0.1";
/// What kube-proxy takes as the cluster's pods.
const CLUSTER_CIDR: &str = "10.246.0.0/16";
/// The node's name.
pub const NODE: &str = "realnode";
/// The cgroup under which the kubelet puts every pod.
const CGROUP: &str = "resume-showcase-node";
/// The kubelet's ports (on [`GATEWAY`], and its health check on loopback), kube-proxy's (loopback).
const KUBELET_PORT: u16 = 10350;
const KUBELET_HEALTHZ: u16 = 10348;
const PROXY_HEALTHZ: u16 = 10356;
const PROXY_METRICS: u16 = 10349;
/// The pod sandbox image (`cargo xtask images` writes it from the `pause` binary).
pub const PAUSE_IMAGE: &str = "localhost/pause:resume-showcase";
/// Where Debian's and Ubuntu's `containernetworking-plugins` put the CNI plugins.
const CNI_BIN: &str = "/usr/lib/cni";
/// Where the API server's port is chosen ([`free_port`]).
const API_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;
/// The serialising lock.
const LOCK: &str = "/run/resume-showcase-node.lock";
/// The Debian packages the node needs.
pub const PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "openssl",
];
/// Sysctls the kubelet or the bridge plugin may change; put back on teardown.
const SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.netfilter.nf_conntrack_max",
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
];
/// Host directories the kubelet and containerd create at fixed paths; removed on teardown when they were not
/// there before (and are empty).
const HOST_DIRS: &[&str] = &[
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/run/netns",
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet/pods",
    "/var/lib/kubelet",
];

/// A control plane with one real node (and no fake ones).
pub struct NodeCluster {
    // Dropped first: the node goes before the control plane it reports to.
    node: Host,
    /// The control plane.
    pub cluster: Cluster,
}

impl NodeCluster {
    /// Starts the control plane and the node, imports the OCI archives in `images` (each a `*.tar`) into the
    /// node's containerd, and waits until the node is Ready and kube-proxy serves the `kubernetes` Service.
    pub async fn start(images: &Path) -> anyhow::Result<Self> {
        preflight()?;
        let lock = tokio::task::spawn_blocking(lock).await??;
        let bin = cluster::binaries()?;
        for tool in ["kubelet", "kube-proxy"] {
            if !bin.join(tool).is_file() {
                bail!(
                    "{} is missing: run `cargo xtask cluster-tools`",
                    bin.join(tool).display()
                );
            }
        }
        let dir = std::env::temp_dir().join(format!("resume-showcase-node-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(dir.join("logs"))?;
        let mut node = Host::new(dir.clone(), lock);
        node.prepare_network()?;
        let port = free_port()?;
        node.guard_port(port)?;
        let cluster = Cluster::start_with(Options {
            kwokctl_config: Some(KWOKCTL_CONFIG.to_owned()),
            apiserver_port: Some(port),
            fake_nodes: 0,
        })
        .await?;
        let pki = cluster.pki_dir();
        let server = format!("https://127.0.0.1:{port}");
        for (name, subject) in [
            ("node", format!("/O=system:nodes/CN=system:node:{NODE}")),
            ("proxy", "/CN=system:kube-proxy".to_owned()),
        ] {
            node.credentials(&pki, name, &subject, &server)?;
        }
        node.start_containerd()?;
        node.import_images(images)?;
        node.start_kubelet(&bin, &pki)?;
        let nodes: Api<Node> = Api::all(cluster.admin.clone());
        cluster
            .wait_for("the real node Ready", || async {
                Ok(nodes
                    .get_opt(NODE)
                    .await?
                    .as_ref()
                    .is_some_and(cluster::node_ready))
            })
            .await
            .map_err(|e| node.explain(e, "kubelet"))?;
        node.start_kube_proxy(&bin)?;
        let started = Instant::now();
        while !iptables_save("nat")?.contains(&format!("-d {API_SERVICE}/32")) {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(node.explain(
                    anyhow::anyhow!("kube-proxy wrote no rule for {API_SERVICE}"),
                    "kube-proxy",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { node, cluster })
    }

    /// Runs `ctr` against the node's containerd, in Kubernetes' namespace; its stdout.
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        output(Command::new("ctr").args(self.node.ctr_args()).args(args))
    }

    /// The files of the node (logs under `logs/`).
    pub fn dir(&self) -> &Path {
        &self.node.dir
    }

    /// The host process of the running container `container` of pod `pod` (containerd's task).
    pub fn container_pid(&self, pod: &str, container: &str) -> anyhow::Result<u32> {
        let tasks = self.ctr(&["tasks", "ls"])?;
        let filter = format!(
            "labels.\"io.kubernetes.pod.name\"=={pod},labels.\"io.kubernetes.container.name\"=={container}"
        );
        let ids = self.ctr(&["containers", "ls", "-q", &filter])?;
        ids.lines()
            .find_map(|id| {
                let line = tasks.lines().find(|t| t.split_whitespace().next() == Some(id))?;
                line.contains("RUNNING")
                    .then(|| line.split_whitespace().nth(1)?.parse().ok())?
            })
            .with_context(|| format!("no running container {container} in pod {pod}"))
    }

    /// Names of the live session pods in `namespace` whose Job's name starts with `job` (every one for `""`).
    pub async fn pods_of_job(&self, namespace: &str, job: &str) -> anyhow::Result<Vec<String>> {
        let pods: Api<Pod> = Api::namespaced(self.cluster.admin.clone(), namespace);
        let selector = format!("{}={}", common::labels::POOL, common::labels::POOL_WARM);
        Ok(pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(common::labels::JOB_NAME))
                    .is_some_and(|name| name.starts_with(job))
            })
            .filter_map(|p| p.metadata.name)
            .collect())
    }
}

/// `--set` arguments installing the chart on this node: the images `cargo xtask images` builds (never
/// pulled), plain HTTP at `localhost` (Traefik on the host, [`crate::traefik`]), the host as the trusted proxy (it reaches
/// Services from [`GATEWAY`]), `warm` warm pods, then `extra` values.
pub fn chart_values(warm: usize, extra: &[&str]) -> Vec<String> {
    let mut set = vec![
        "image.repository=ghcr.io/resume-showcase/resume-showcase".to_owned(),
        "image.tag=local".to_owned(),
        "image.pullPolicy=Never".to_owned(),
        "ingress.host=localhost".to_owned(),
        "ingress.tls.enabled=false".to_owned(),
        format!("trustedProxies={{{GATEWAY}/32}}"),
        format!("warmPoolSize={warm}"),
    ];
    set.extend(extra.iter().map(|s| (*s).to_owned()));
    set.into_iter().flat_map(|s| ["--set".to_owned(), s]).collect()
}

/// kwokctl's settings for a real node: every component on loopback except the API server, which pods reach
/// at [`GATEWAY`]; its certificate valid for the `kubernetes` Service; kwok limited to fake nodes (it would
/// otherwise fake the real node's pods); the kubelet's client certificate for logs and exec.
const KWOKCTL_CONFIG: &str = r#"apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubeApiserverCertSANs: ["10.96.0.1", "10.246.0.1"]
  bindAddress: 127.0.0.1
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - {key: bind-address, value: 0.0.0.0, override: true}
  - {key: advertise-address, value: "10.246.0.1"}
  - {key: service-cluster-ip-range, value: "10.96.0.0/16"}
  - {key: kubelet-client-certificate, value: "{pki}/admin.crt"}
  - {key: kubelet-client-key, value: "{pki}/admin.key"}
  - {key: kubelet-preferred-address-types, value: "InternalIP"}
- name: kube-controller-manager
  extraArgs:
  - {key: service-cluster-ip-range, value: "10.96.0.0/16"}
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: "kwok.x-k8s.io/node=fake"}
  - {key: cidr, value: "10.246.128.0/24"}
"#;

/// Root, cgroups, the packages' programs: one sentence for whatever is missing.
fn preflight() -> anyhow::Result<()> {
    if nix::unistd::geteuid().as_raw() != 0 {
        bail!("the real-node tests need root (containerd, the kubelet and the bridge do)");
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        bail!("the real-node tests need cgroups mounted at /sys/fs/cgroup");
    }
    let mut missing = Vec::new();
    for program in [
        "containerd",
        "ctr",
        "runc",
        "iptables",
        "iptables-save",
        "ip",
        "sysctl",
        "openssl",
    ] {
        if which(program).is_none() {
            missing.push(program.to_owned());
        }
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        if !Path::new(CNI_BIN).join(plugin).is_file() {
            missing.push(format!("{CNI_BIN}/{plugin}"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "the real-node tests need {} (Debian packages {}; `cargo xtask setup` installs them)",
            missing.join(", "),
            PACKAGES.join(", ")
        );
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Waits for the machine's one node slot (tests in other processes may hold it).
fn lock() -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .with_context(|| format!("cannot open {LOCK}"))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {LOCK}: {e}"))
}

/// A port for the API server, free on every address, from [`API_PORTS`]: below Linux's default ephemeral range
/// (32768–60999), so that no outgoing connection made while the control plane starts can take it before
/// the API server binds it, and below the ports kwokctl picks for the other components (from 32767 down).
fn free_port() -> anyhow::Result<u16> {
    let span = API_PORTS.end() - API_PORTS.start() + 1;
    // Start where this process's id points, so that runs on one machine do not all try the same ports first.
    let offset = (std::process::id() % u32::from(span)) as u16;
    (0..span)
        .map(|i| API_PORTS.start() + (offset + i) % span)
        .find(|&port| {
            std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        })
        .with_context(|| format!("no free port for the API server in {API_PORTS:?}"))
}

/// Everything started or changed on the host, undone on drop in reverse.
struct Host {
    dir: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
    /// Running processes, in start order, with their names.
    children: Vec<(&'static str, Child)>,
    sysctls: Vec<(String, String)>,
    absent_dirs: Vec<PathBuf>,
    /// cgroup v2: controllers this node enabled in the root's `cgroup.subtree_control` (disabled again; a
    /// killed run leaves them on, which changes nothing for the host's own cgroups).
    enabled_controllers: Vec<&'static str>,
    /// Whether this node loaded br_netfilter (unloaded again, which also takes its sysctls away).
    loaded_br_netfilter: bool,
}

impl Host {
    fn new(dir: PathBuf, lock: nix::fcntl::Flock<std::fs::File>) -> Self {
        let sysctls = SYSCTLS
            .iter()
            .filter_map(|key| Some((key.to_string(), sysctl(key)?)))
            .collect();
        let absent_dirs = HOST_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|d| !d.exists())
            .collect();
        Self {
            dir,
            _lock: lock,
            children: Vec::new(),
            sysctls,
            absent_dirs,
            enabled_controllers: Vec::new(),
            loaded_br_netfilter: false,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn ctr_args(&self) -> Vec<String> {
        vec![
            "--address".into(),
            self.socket().display().to_string(),
            "-n".into(),
            "k8s.io".into(),
        ]
    }

    /// The bridge with the gateway address (so the API server can advertise it before any pod exists), the
    /// Service range routed onto it, and nothing forwarded between it and any other interface. Every packet
    /// that touches the bridge is decided by these rules (inserted at the top of iptables' `FORWARD`; only
    /// kube-proxy's jumps go above them later) before the host's own rules and policy: traffic among the pods
    /// (and from a pod to a Service's pod) is accepted even where the `FORWARD` policy is `DROP`, as Docker
    /// sets it on GitHub's runners. (A host firewall in nftables' own forward chain is not overridden.)
    fn prepare_network(&mut self) -> anyhow::Result<()> {
        // A bridge left by a killed run would make every later one fail; it is ours by name.
        if Path::new("/sys/class/net").join(BRIDGE).exists() {
            teardown_network();
        }
        // Packets between two pods on the bridge go through iptables only with br_netfilter: without it, a
        // pod's connection to a Service whose pod is on the same bridge gets its answer from the wrong
        // address. Built into some kernels (these machines), a module on others (Ubuntu's).
        if !Path::new("/proc/sys/net/bridge").exists() {
            output(Command::new("modprobe").arg("br_netfilter"))
                .context("the real node needs the kernel's br_netfilter (modprobe br_netfilter failed)")?;
            self.loaded_br_netfilter = true;
        }
        if sysctl("net.bridge.bridge-nf-call-iptables").as_deref() != Some("1") {
            run(Command::new("sysctl").args(["-qw", "net.bridge.bridge-nf-call-iptables=1"]))?;
        }
        run(Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]))?;
        run(Command::new("ip").args(["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE]))?;
        run(Command::new("ip").args(["link", "set", BRIDGE, "up"]))?;
        run(Command::new("ip").args(["route", "add", SERVICE_CIDR, "dev", BRIDGE]))?;
        run(Command::new("ip").args(["route", "add", "unreachable", "10.246.128.0/24"]))?;
        for (from, to, what, verdict) in [
            ("-i", "! -o", "no pod egress", "DROP"),
            ("! -i", "-o", "no pod ingress", "DROP"),
            ("-i", "-o", "pod to pod", "ACCEPT"),
        ] {
            let mut rule = vec!["-w", "-I", "FORWARD", "1"];
            rule.extend(from.split(' '));
            rule.push(BRIDGE);
            rule.extend(to.split(' '));
            rule.push(BRIDGE);
            let comment = format!("resume-showcase-node: {what}");
            rule.extend(["-m", "comment", "--comment", &comment, "-j", verdict]);
            run(Command::new("iptables").args(&rule))?;
        }
        Ok(())
    }

    /// The API server listens on every address (pods reach it at the gateway): packets for its port, and for
    /// the gateway, are taken only from loopback and the bridge.
    fn guard_port(&mut self, port: u16) -> anyhow::Result<()> {
        let chain = "RSNODE-INPUT";
        run(Command::new("iptables").args(["-w", "-N", chain]))?;
        for rule in [
            vec!["-A", chain, "-i", "lo", "-j", "RETURN"],
            vec!["-A", chain, "-i", BRIDGE, "-j", "RETURN"],
            vec!["-A", chain, "-j", "DROP"],
        ] {
            run(Command::new("iptables").arg("-w").args(rule))?;
        }
        let port = port.to_string();
        run(Command::new("iptables").args([
            "-w", "-I", "INPUT", "1", "-p", "tcp", "--dport", &port, "-j", chain,
        ]))?;
        run(Command::new("iptables").args([
            "-w",
            "-I",
            "INPUT",
            "1",
            "-d",
            &format!("{GATEWAY}/32"),
            "-j",
            chain,
        ]))?;
        Ok(())
    }

    /// A client certificate signed by the cluster's CA, and a kubeconfig using it.
    fn credentials(&self, pki: &Path, name: &str, subject: &str, server: &str) -> anyhow::Result<()> {
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let crt = self.dir.join(format!("{name}.crt"));
        run(Command::new("openssl")
            .args([
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&csr))?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(pki.join("ca.crt"))
            .arg("-CAkey")
            .arg(pki.join("ca.key"))
            .arg("-CAcreateserial")
            .arg("-CAserial")
            .arg(self.dir.join("ca.srl"))
            .arg("-out")
            .arg(&crt))?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: node, cluster: {{server: \"{server}\", \
             certificate-authority: \"{ca}\"}}}}]\nusers: [{{name: {name}, user: {{client-certificate: \"{crt}\", \
             client-key: \"{key}\"}}}}]\ncontexts: [{{name: {name}, context: {{cluster: node, user: {name}}}}}]\n\
             current-context: {name}\n",
            ca = pki.join("ca.crt").display(),
            crt = crt.display(),
            key = key.display(),
        );
        std::fs::write(self.dir.join(format!("{name}.kubeconfig")), kubeconfig)?;
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, command: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join("logs").join(format!("{name}.log")))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.children.push((name, child));
        Ok(())
    }

    /// containerd with its root, state, socket and runc state under the node's directory.
    fn start_containerd(&mut self) -> anyhow::Result<()> {
        let version = output(Command::new("containerd").arg("--version"))?;
        let (major, minor) = containerd_release(&version)?;
        eprintln!("real node: containerd {major}.{minor}");
        let config = containerd_config(&self.dir);
        let cni = cni_config();
        std::fs::create_dir_all(self.dir.join("cni/net.d"))?;
        std::fs::write(self.dir.join("cni/net.d/10-resume-showcase.conflist"), cni)?;
        let file = self.dir.join("containerd.toml");
        std::fs::write(&file, config)?;
        self.spawn(
            "containerd",
            Command::new("containerd").arg("--config").arg(&file),
        )?;
        let started = Instant::now();
        while output(Command::new("ctr").args(self.ctr_args()).arg("version")).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err(self.explain(anyhow::anyhow!("containerd did not answer"), "containerd"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn import_images(&self, images: &Path) -> anyhow::Result<()> {
        let mut found = 0;
        for entry in std::fs::read_dir(images).with_context(|| format!("reading {}", images.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tar") {
                run(Command::new("ctr")
                    .args(self.ctr_args())
                    .args(["images", "import", "--all-platforms"])
                    .arg(&path))?;
                found += 1;
            }
        }
        if found == 0 {
            bail!(
                "no image archives in {}: run `cargo xtask images`",
                images.display()
            );
        }
        Ok(())
    }

    /// The kubelet, in its own cgroup root, with a node certificate.
    fn start_kubelet(&mut self, bin: &Path, pki: &Path) -> anyhow::Result<()> {
        // The kubelet refuses a cgroup root that does not exist. cgroup v1: in every hierarchy, with cpuset's
        // values filled in. v2 (GitHub's runners): one directory, in which the kubelet's controllers are on.
        let v1 = !Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if !v1 {
            self.unified_cgroup_root()?;
        }
        for controller in std::fs::read_dir("/sys/fs/cgroup")?.filter(|_| v1) {
            let controller = controller?.path();
            if controller.ends_with("unified") || !controller.is_dir() {
                continue;
            }
            let dir = controller.join(CGROUP);
            if std::fs::create_dir_all(&dir).is_err() {
                continue;
            }
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(value) = std::fs::read_to_string(controller.join(file)) {
                    std::fs::write(dir.join(file), value)?;
                }
            }
        }
        let dir = self.dir.display();
        let mut config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP}
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://{dir}/containerd.sock
address: {GATEWAY}
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {KUBELET_HEALTHZ}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
clusterDomain: cluster.local
podCIDR: {POD_CIDR}
hairpinMode: hairpin-veth
podLogsDir: {dir}/pod-logs
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
evictionHard: {{}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
",
            ca = pki.join("ca.crt").display(),
        );
        // Pods' resolv.conf: the host's, which names nothing the pods could reach; they need no DNS.
        let _ = writeln!(config, "resolvConf: \"\"");
        let file = self.dir.join("kubelet.yaml");
        std::fs::write(&file, config)?;
        self.spawn(
            "kubelet",
            Command::new(bin.join("kubelet"))
                .arg("--config")
                .arg(&file)
                .arg("--kubeconfig")
                .arg(self.dir.join("node.kubeconfig"))
                .arg("--root-dir")
                .arg(self.dir.join("kubelet"))
                .arg("--cert-dir")
                .arg(self.dir.join("kubelet-pki"))
                .args(["--hostname-override", NODE, "--node-ip", GATEWAY]),
        )
    }

    /// cgroup v2: the node's cgroup under the root, with the controllers the kubelet checks for
    /// ([`KUBELET_CONTROLLERS`]) available in it, turned on in the root's `cgroup.subtree_control` where the
    /// host (usually systemd) has not already. The kubelet turns them on further down itself.
    fn unified_cgroup_root(&mut self) -> anyhow::Result<()> {
        let root = Path::new("/sys/fs/cgroup");
        let read = |file: &str| std::fs::read_to_string(root.join(file)).unwrap_or_default();
        let missing = controllers_to_enable(&read("cgroup.controllers"), &read("cgroup.subtree_control"));
        if !missing.is_empty() {
            let change: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
            std::fs::write(root.join("cgroup.subtree_control"), change.join(" ")).with_context(|| {
                format!(
                    "cannot turn on the cgroup controllers {missing:?} in {}",
                    root.display()
                )
            })?;
            self.enabled_controllers = missing;
        }
        std::fs::create_dir_all(root.join(CGROUP))?;
        Ok(())
    }

    /// kube-proxy in iptables mode: Services on the node, and from the host.
    fn start_kube_proxy(&mut self, bin: &Path) -> anyhow::Result<()> {
        let config = format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {NODE}
clusterCIDR: {CLUSTER_CIDR}
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:{PROXY_HEALTHZ}
metricsBindAddress: 127.0.0.1:{PROXY_METRICS}
nodePortAddresses: [\"{GATEWAY}/32\"]
oomScoreAdj: 0
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
iptables: {{localhostNodePorts: false, masqueradeAll: false, syncPeriod: 30s, minSyncPeriod: 0s}}
",
            kubeconfig = self.dir.join("proxy.kubeconfig").display(),
        );
        let file = self.dir.join("kube-proxy.yaml");
        std::fs::write(&file, config)?;
        self.spawn(
            "kube-proxy",
            Command::new(bin.join("kube-proxy")).arg("--config").arg(&file),
        )
    }

    /// `error`, with the last lines of `process`'s log.
    fn explain(&self, error: anyhow::Error, process: &str) -> anyhow::Error {
        let log =
            std::fs::read_to_string(self.dir.join("logs").join(format!("{process}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        error.context(format!("{process}'s last log lines:\n{}", tail.join("\n")))
    }

    /// Stops kube-proxy and the kubelet, then every container, then containerd.
    fn stop_everything(&mut self) {
        let mut netns = Vec::new();
        while let Some((name, mut child)) = self.children.pop() {
            if name == "containerd" {
                netns = self.delete_containers();
            }
            stop(&mut child);
        }
        // Shims whose containerd is gone: their command line names our socket.
        let socket = self.socket().display().to_string();
        for (pid, cmdline) in processes() {
            if cmdline.contains(&socket) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        // Whatever is still in the pods' cgroups.
        for cgroup in &our_cgroups() {
            for procs in walk(cgroup).into_iter().map(|d| d.join("cgroup.procs")) {
                for pid in std::fs::read_to_string(procs).unwrap_or_default().lines() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        for ns in netns {
            let _ = output(Command::new("ip").args(["netns", "delete", &ns]));
        }
    }

    /// Kills and deletes every task and container; returns their network namespaces.
    fn delete_containers(&self) -> Vec<String> {
        let ctr =
            |args: &[&str]| output(Command::new("ctr").args(self.ctr_args()).args(args)).unwrap_or_default();
        let mut netns = Vec::new();
        for container in ctr(&["containers", "ls", "-q"]).lines() {
            let info = ctr(&["containers", "info", container]);
            if let Ok(info) = serde_json::from_str::<serde_json::Value>(&info)
                && let Some(namespaces) = info["Spec"]["linux"]["namespaces"].as_array()
            {
                for ns in namespaces {
                    if ns["type"] == "network"
                        && let Some(path) = ns["path"].as_str()
                        && let Some(name) = Path::new(path).file_name()
                    {
                        netns.push(name.to_string_lossy().into_owned());
                    }
                }
            }
        }
        let started = Instant::now();
        loop {
            let tasks = ctr(&["tasks", "ls", "-q"]);
            if tasks.trim().is_empty() || started.elapsed() > Duration::from_secs(10) {
                break;
            }
            for task in tasks.lines() {
                ctr(&["tasks", "kill", "-s", "SIGKILL", task]);
                ctr(&["tasks", "delete", task]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for container in ctr(&["containers", "ls", "-q"]).lines() {
            ctr(&["containers", "delete", container]);
        }
        netns.sort_unstable();
        netns.dedup();
        netns
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_everything();
        teardown_network();
        // The kubelet's mounts (tokens, empty dirs), deepest first.
        let prefix = format!("{}/", self.dir.display());
        for _ in 0..3 {
            let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|m| m.starts_with(&prefix))
                .map(str::to_owned)
                .collect();
            if mounts.is_empty() {
                break;
            }
            mounts.sort_unstable_by(|a, b| b.cmp(a));
            for mount in mounts {
                let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for cgroup in &our_cgroups() {
            let mut dirs = walk(cgroup);
            dirs.sort_unstable_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                let _ = std::fs::remove_dir(dir);
            }
        }
        for controller in &self.enabled_controllers {
            // Refused while another cgroup uses it, which then was not ours alone to turn off.
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", format!("-{controller}"));
        }
        // go-cni's result cache (a fixed path): the files naming our network.
        if let Ok(entries) = std::fs::read_dir("/var/lib/cni/results") {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("resume-showcase-")
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        for link in std::fs::read_dir("/var/log/containers")
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_link(link.path()).is_ok_and(|target| target.starts_with(&self.dir)) {
                let _ = std::fs::remove_file(link.path());
            }
        }
        for file in ["kubelet.sock", "kubelet_internal_checkpoint"] {
            if self.absent_dirs.iter().any(|d| d.ends_with("device-plugins")) {
                let _ = std::fs::remove_file(Path::new("/var/lib/kubelet/device-plugins").join(file));
            }
        }
        for dir in &self.absent_dirs {
            let _ = std::fs::remove_dir(dir);
        }
        if self.loaded_br_netfilter {
            let _ = output(Command::new("modprobe").args(["-r", "br_netfilter"]));
        }
        for (key, value) in &self.sysctls {
            if sysctl(key).as_ref() != Some(value) {
                let _ = output(Command::new("sysctl").args(["-qw", &format!("{key}={value}")]));
            }
        }
        if std::env::var_os("SHOWCASE_KEEP_NODE").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes the bridge, its routes, kube-proxy's chains and our own rules (IPv4 and IPv6): idempotent.
fn teardown_network() {
    for tool in ["iptables", "ip6tables"] {
        for table in ["nat", "filter", "mangle", "raw"] {
            let Ok(dump) = output(Command::new(format!("{tool}-save")).args(["-t", table])) else {
                continue;
            };
            let ours = |chain: &str| chain.starts_with("KUBE-") || chain.starts_with("RSNODE-");
            let chains: Vec<&str> = dump
                .lines()
                .filter_map(|l| l.strip_prefix(':'))
                .filter_map(|l| l.split(' ').next())
                .filter(|c| ours(c))
                .collect();
            for line in dump.lines().filter(|l| l.starts_with("-A ")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let jumps_to_ours = words.windows(2).any(|w| w[0] == "-j" && ours(w[1]));
                if words.get(1).is_some_and(|c| !ours(c))
                    && (jumps_to_ours || line.contains("resume-showcase-node:"))
                {
                    let mut args: Vec<String> = shell_words(line);
                    args[0] = "-D".into();
                    let _ = output(Command::new(tool).args(["-w", "-t", table]).args(&args));
                }
            }
            for flag in ["-F", "-X"] {
                for chain in &chains {
                    let _ = output(Command::new(tool).args(["-w", "-t", table, flag, chain]));
                }
            }
        }
    }
    let _ = output(Command::new("ip").args(["route", "del", "unreachable", "10.246.128.0/24"]));
    let _ = output(Command::new("ip").args(["route", "del", SERVICE_CIDR]));
    let _ = output(Command::new("ip").args(["link", "del", BRIDGE]));
    // Network namespaces of pods whose processes are all gone.
    for line in output(Command::new("ip").args(["netns", "list"]))
        .unwrap_or_default()
        .lines()
    {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name.starts_with("cni-")
            && output(Command::new("ip").args(["netns", "pids", name])).is_ok_and(|p| p.trim().is_empty())
        {
            let _ = output(Command::new("ip").args(["netns", "delete", name]));
        }
    }
}

/// Splits an `iptables-save` rule into arguments (double quotes group words, as iptables writes comments).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// containerd's configuration for a private node under `dir`: its root, state, socket, plugins and runc state
/// there; the packaged CNI plugins and our network; the local sandbox image; and `restrict_oom_score_adj`,
/// since these machines lack `CAP_SYS_RESOURCE` (without it every sandbox fails). Only what differs from
/// containerd's defaults, in config version 2: the format of containerd 1.6 and 1.7 (Debian's, and Docker's
/// `containerd.io` on GitHub's runners until 2.0), which containerd 2 still reads and migrates itself.
/// The runc runtime is spelled out whole (type, `sandbox_mode`, which containerd 2 renames `sandboxer`
/// itself): naming it replaces the default entry. NRI is off: containerd 2 would otherwise take over the
/// host's NRI socket and start the host's NRI plugins.
fn containerd_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"

[grpc]
  address = "{d}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

# containerd 2 turns NRI on by default, at a fixed host socket (/var/run/nri) and with the host's plugins.
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{d}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      sandbox_mode = "podsandbox"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/containerd/runc"
        SystemdCgroup = false
"#
    )
}

/// The containerd release `containerd --version` names (`containerd <package> 1.6.20~ds1 <commit>`, `containerd
/// containerd.io 1.7.27 <commit>`, `containerd github.com/containerd/containerd/v2 v2.4.2 <commit>`): its major
/// and minor version, refused below 1.6 (the oldest whose configuration [`containerd_config`] writes).
fn containerd_release(version: &str) -> anyhow::Result<(u32, u32)> {
    let release = version
        .split_whitespace()
        .filter_map(|word| {
            let word = word.strip_prefix('v').unwrap_or(word);
            let mut parts = word.split(['.', '~', '-', '+']);
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            Some((major, minor))
        })
        .next()
        .with_context(|| format!("`containerd --version` names no release: {version:?}"))?;
    if release < (1, 6) {
        bail!(
            "the real node needs containerd 1.6 or newer; this is {}.{}",
            release.0,
            release.1
        );
    }
    Ok(release)
}

/// The pods' network: the bridge plugin on [`BRIDGE`], addresses from [`POD_CIDR`].
fn cni_config() -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "resume-showcase-node",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": false, "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
    .to_string()
}

fn sysctl(key: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(key.replace('.', "/")))
        .ok()
        .map(|v| v.trim().to_owned())
}

fn iptables_save(table: &str) -> anyhow::Result<String> {
    output(Command::new("iptables-save").args(["-t", table]))
}

/// SIGTERM, up to 10 s, then SIGKILL.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every process with its command line.
fn processes() -> Vec<(nix::unistd::Pid, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((
                nix::unistd::Pid::from_raw(pid),
                String::from_utf8_lossy(&cmdline).replace('\0', " "),
            ))
        })
        .collect()
}

/// The node's cgroup in every hierarchy (v1: one per controller, and the unified one of a hybrid set-up; v2:
/// one), where it exists.
fn our_cgroups() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(CGROUP))
        .collect();
    out.push(root.join(CGROUP));
    out.retain(|d| d.is_dir());
    out
}

/// The cgroup v2 controllers the kubelet's container manager needs in its cgroup root (where the kernel has
/// them: `hugetlb` may be missing).
const KUBELET_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "hugetlb", "pids"];

/// Of [`KUBELET_CONTROLLERS`], those the root has (`cgroup.controllers`) but does not hand down yet
/// (`cgroup.subtree_control`).
fn controllers_to_enable(available: &str, enabled: &str) -> Vec<&'static str> {
    let has = |list: &str, c: &str| list.split_whitespace().any(|word| word == c);
    KUBELET_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| has(available, c) && !has(enabled, c))
        .collect()
}

/// `dir` and every directory below it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        i += 1;
    }
    out
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    output(command).map(|_| ())
}

/// Runs `command`; its stdout, or an error naming it with its stderr.
fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed: {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_rules_split_like_a_shell() {
        assert_eq!(
            shell_words(
                r#"-A FORWARD -i rsnode0 -m comment --comment "resume-showcase-node: no pod egress" -j DROP"#
            ),
            [
                "-A",
                "FORWARD",
                "-i",
                "rsnode0",
                "-m",
                "comment",
                "--comment",
                "resume-showcase-node: no pod egress",
                "-j",
                "DROP"
            ]
        );
    }

    #[test]
    fn cgroup_v2_controllers_are_turned_on_only_where_missing() {
        // Ubuntu's systemd hands down everything: nothing to change.
        let all = "cpuset cpu io memory hugetlb pids rdma misc";
        assert!(controllers_to_enable(all, all).is_empty());
        assert_eq!(
            controllers_to_enable(all, "cpu io memory pids"),
            ["cpuset", "hugetlb"]
        );
        // A kernel without hugetlb: not asked for.
        assert_eq!(
            controllers_to_enable("cpu memory pids cpuset", ""),
            ["cpu", "cpuset", "memory", "pids"]
        );
    }

    #[test]
    fn containerd_keeps_everything_under_the_node_directory() {
        let config = containerd_config(Path::new("/n"));
        let paths: Vec<&str> = config.split('"').filter(|word| word.starts_with('/')).collect();
        assert!(paths.len() >= 6, "{config}");
        for path in paths {
            assert!(path.starts_with("/n/") || path == CNI_BIN, "{path} in\n{config}");
        }
        assert!(
            config.contains(&format!("sandbox_image = \"{PAUSE_IMAGE}\"")),
            "{config}"
        );
        assert!(config.contains("restrict_oom_score_adj = true"), "{config}");
        assert!(config.contains("Root = \"/n/containerd/runc\""), "{config}");
        assert!(
            config.contains("runtime_type = \"io.containerd.runc.v2\""),
            "{config}"
        );
        assert!(
            config.contains("[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true"),
            "{config}"
        );
    }

    #[test]
    fn containerd_releases_are_read_from_each_packaging() {
        for (version, release) in [
            (
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1",
                (1, 6),
            ),
            (
                "containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da",
                (1, 7),
            ),
            (
                "containerd github.com/containerd/containerd/v2 v2.4.2 abcdef",
                (2, 4),
            ),
        ] {
            assert_eq!(containerd_release(version).unwrap(), release, "{version}");
        }
        let old = containerd_release("containerd github.com/containerd/containerd 1.5.9 x").unwrap_err();
        assert!(old.to_string().contains("1.6 or newer"), "{old}");
        assert!(containerd_release("containerd").is_err());
    }
}
