//! The production path on a real node: the chart installed with helm as a user would, its provisioner, its
//! three edge servers and every session pod running as real containers (the images `cargo xtask images`
//! builds), reached through Traefik, the ingress controller the chart is written for, on the host
//! ([`testkit::traefik`]) at `https://localhost`: the chart's TLS on, as by default, with a certificate
//! generated for the test in the Secret the chart's Ingress names (where cert-manager would put it).
//!
//! One test walks the whole life of a release on one node (starting a node takes seconds, and only one runs at
//! a time on a machine): install; the smoke check through the ingress and the edge; the killed pod's container
//! really gone and the pool refilled with real pods; `helm upgrade` with a changed pod template replacing the
//! warm pods while an assigned session keeps its pod; an upgrade to `ingress.kind: IngressRoute` served by
//! Traefik's CRD provider; `helm uninstall` leaving no Job, pod or running container
//! (stopped ones are removed by the kubelet's container garbage collection, once a minute).
//!
//! The page itself is loaded in Chromium from an origin of its own, as GitHub Pages serves it, with a
//! `config.json` naming the ingress: it gets a pod, samples, and survives a kill.
//!
//! Not proven here: NetworkPolicy (the bridge CNI plugin does not enforce policies, and no enforcing plugin
//! can be had on these machines: ARCHITECTURE.md says why; the chart's policies are checked by `helm template`
//! tests only), cert-manager issuing the certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::api::PoolStatus;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use testkit::node::{self, NodeCluster};
use testkit::traefik::{Routes, Traefik};
use testkit::ws::WsClient;

const NAMESPACE: &str = "showcase";
const RELEASE: &str = "demo";
const BASE: &str = "https://localhost";
/// The IngressRoute's entry point (plain HTTP).
const PLAIN: &str = "http://localhost";
const WARM: usize = 2;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn images() -> PathBuf {
    std::env::var_os("SHOWCASE_IMAGES").map_or_else(|| root().join("target/images"), PathBuf::from)
}

/// Runs helm against the node's cluster; panics with its output when it fails.
fn helm(node: &NodeCluster, args: &[&str]) {
    let bin = testkit::cluster::binaries().unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(bin.join("helm"))
        .arg("--kubeconfig")
        .arg(node.cluster.kubeconfig())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}\nkubelet log in {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.dir().display()
    );
    println!(
        "real node: helm {} took {:.1} s",
        args[0],
        started.elapsed().as_secs_f64()
    );
}

async fn pool(http: &e2e::http::Http) -> Option<PoolStatus> {
    pool_at(http, BASE).await
}

/// `GET /pool` through the ingress at `base`, when it answers with one.
async fn pool_at(http: &e2e::http::Http, base: &str) -> Option<PoolStatus> {
    http.get(&format!("{base}/pool")).await.ok()?.json().ok()
}

/// `POST /session` through the ingress at `base`; asserts the WebSocket URL it names starts with `ws_prefix`.
async fn new_session(
    http: &e2e::http::Http,
    base: &str,
    ws_prefix: &str,
) -> common::api::CreateSessionResponse {
    let session: common::api::CreateSessionResponse = http
        .send(
            hyper::Method::POST,
            &format!("{base}/session"),
            None,
            Some(&serde_json::json!({})),
        )
        .await
        .unwrap()
        .json()
        .unwrap();
    assert!(
        session.websocket_url.starts_with(ws_prefix),
        "{}",
        session.websocket_url
    );
    session
}

/// Containers in the node's containerd of pod `pod`, by the label the kubelet gives them.
fn containers_of(node: &NodeCluster, pod: &str) -> usize {
    node.ctr(&[
        "containers",
        "ls",
        "-q",
        &format!("labels.\"io.kubernetes.pod.name\"=={pod}"),
    ])
    .unwrap()
    .lines()
    .count()
}

/// Running containers (containerd tasks) of the containers matching `filter`. Stopped containers stay
/// listed until the kubelet's container garbage collection, which runs once a minute; their processes are gone.
fn running(node: &NodeCluster, filter: &str) -> usize {
    let tasks = node.ctr(&["tasks", "ls"]).unwrap();
    node.ctr(&["containers", "ls", "-q", filter])
        .unwrap()
        .lines()
        .filter(|id| {
            tasks
                .lines()
                .any(|t| t.split_whitespace().next() == Some(id) && t.contains("RUNNING"))
        })
        .count()
}

/// Running containers of the pods of Job `job` (named `<job>-<suffix>`).
fn running_in_job(node: &NodeCluster, job: &str) -> usize {
    running(node, &format!("labels.\"io.kubernetes.pod.name\"~=^{job}-"))
}

/// The restricted profile, read from the kernel: user 65532, no capabilities, no privilege gain, seccomp
/// filtering, a read-only root file system.
fn assert_restricted(pid: u32, what: &str) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        field("Uid:").split_whitespace().all(|u| u == "65532"),
        "{what}: Uid {}",
        field("Uid:")
    );
    assert!(
        field("Gid:").split_whitespace().all(|g| g == "65532"),
        "{what}: Gid {}",
        field("Gid:")
    );
    assert_eq!(
        field("CapEff:"),
        "0000000000000000",
        "{what}: effective capabilities"
    );
    assert_eq!(field("CapBnd:"), "0000000000000000", "{what}: bounding set");
    assert_eq!(field("NoNewPrivs:"), "1", "{what}: no_new_privs");
    assert_eq!(field("Seccomp:"), "2", "{what}: seccomp filter");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
    let root = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/")).unwrap();
    let options = root.split(' ').nth(3).unwrap_or_default();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "{what}: root mounted {options}"
    );
}

/// Session pods of the release that are not being deleted, by name.
async fn session_pods(pods: &Api<Pod>) -> Vec<Pod> {
    let list = pods
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            common::labels::POOL,
            common::labels::POOL_WARM
        )))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// The pool's name of a pod: its Job's (what the API and the WebSocket `hello` call it).
fn pool_name(pod: &Pod) -> Option<String> {
    pod.labels().get(common::labels::JOB_NAME).cloned()
}

fn label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.labels().get(key).map(String::as_str)
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Serves the built site (`E2E_DIST`) on a port of its own, with a `config.json` naming the ingress; returns
/// the server task and the page's origin.
async fn serve_site() -> (tokio::task::JoinHandle<()>, String) {
    let dist = std::env::var_os("E2E_DIST").map_or_else(|| root().join("dist"), PathBuf::from);
    assert!(
        dist.join("index.html").is_file(),
        "no site in {} (cargo xtask test builds it)",
        dist.display()
    );
    let app = axum::Router::new()
        .route(
            "/config.json",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "api": BASE })) }),
        )
        .fallback_service(tower_http::services::ServeDir::new(dist));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (task, origin)
}

/// The page's answered pings (the statistics cell's `data-received`).
async fn received(client: &fantoccini::Client) -> u64 {
    e2e::browser::js(
        client,
        "return Number(document.querySelector('#stat-counts')?.dataset.received ?? 0)",
    )
    .await
    .as_u64()
    .unwrap_or(0)
}

/// The page in Chromium from `origin`: a pod, samples, a kill, the replacement, samples, no console errors.
async fn page_in_chromium(origin: &str, http: &e2e::http::Http) {
    use e2e::browser::{console_errors, eventually, start_browser_with, text};
    // The ingress's certificate is the test's own, which this browser profile has no reason to trust.
    let (_browser, client) = start_browser_with(&["--ignore-certificate-errors"]).await;
    client.goto(&format!("{origin}/")).await.unwrap();
    let first = eventually(Duration::from_secs(30), "a pod name on the page", async || {
        let name = text(&client, "#pod-name").await;
        name.starts_with("session-").then_some(name)
    })
    .await;
    eventually(Duration::from_secs(15), "5 samples", async || {
        (received(&client).await >= 5).then_some(())
    })
    .await;
    let before = received(&client).await;
    client
        .find(fantoccini::Locator::Css("#kill"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let second = eventually(
        Duration::from_secs(30),
        "the replacement's name on the page",
        async || {
            let name = text(&client, "#pod-name").await;
            (name.starts_with("session-") && name != first).then_some(name)
        },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "samples from the replacement",
        async || (received(&client).await >= before + 5).then_some(()),
    )
    .await;
    let announced = eventually(Duration::from_secs(15), "the recovery announced", async || {
        let said = text(&client, "#announcer").await;
        said.contains("Recovered in").then_some(said)
    })
    .await;
    println!("real node: Chromium from {origin}: {first} → {second}; {announced}");
    // Each pod the node starts adds a veth to this host, which Chromium takes for a network change: it
    // closes its HTTP/2 sessions (Traefik speaks HTTP/2), and the open event stream fails with
    // ERR_NETWORK_CHANGED; the page's EventSource reconnects (what a visitor whose network changes gets).
    // Every other console error fails the test.
    let errors: Vec<String> = console_errors(&client)
        .await
        .into_iter()
        .filter(|e| !(e.contains("/pool/events") && e.contains("net::ERR_NETWORK_CHANGED")))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    // Leaving the page ends its session (a keepalive DELETE on `pagehide`), so the pool settles again. The
    // browser stays open until the provisioner has seen it: closing at once can drop the request.
    client.goto("about:blank").await.unwrap();
    eventually(
        Duration::from_secs(15),
        "the page's session ended after leaving the page",
        async || (pool(http).await?.assigned == 0).then_some(()),
    )
    .await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_on_a_real_node_through_its_ingress() {
    // Several rustls back-ends are compiled into the workspace; say which one this process uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let node = NodeCluster::start(&images()).await.unwrap();
    println!(
        "real node: control plane and node up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // TLS as in production (the chart's default): https:// for the API, wss:// for the edge.
    let certificate = testkit::tls::TestCertificate::for_names(&["localhost"]).unwrap();
    let tls = testkit::tls::client_config(Some(&certificate.pem)).unwrap();
    let ingress = Traefik::start(
        &node,
        NAMESPACE,
        "127.0.0.1:443".parse().unwrap(),
        true,
        Routes::Ingress,
    )
    .await
    .unwrap();
    // The page, as GitHub Pages would serve it: from another origin, its config.json naming the ingress.
    let (site, origin) = serve_site().await;
    let allowed = format!("allowedOrigins={{{origin}}}");
    let chart = root().join("helm/resume-showcase");
    let chart = chart.to_str().unwrap();
    let mut install = vec![
        "install",
        RELEASE,
        chart,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
    ];
    let set = node::chart_values(WARM, &[&allowed, "ingress.tls.enabled=true"]);
    install.extend(set.iter().map(String::as_str));
    helm(&node, &install);
    // The certificate of the chart's Ingress, where cert-manager would put it.
    let secret = Traefik::install_certificate(
        &node,
        NAMESPACE,
        &format!("{RELEASE}-resume-showcase"),
        &certificate,
    )
    .await
    .unwrap();
    println!("real node: Traefik serves the Ingress's TLS Secret {secret}");

    let http = e2e::http::Http::new(tls.clone(), Duration::from_secs(10));
    let pods: Api<Pod> = Api::namespaced(node.cluster.admin.clone(), NAMESPACE);
    let jobs: Api<Job> = Api::namespaced(node.cluster.admin.clone(), NAMESPACE);
    let waited = Instant::now();
    let full = node
        .cluster
        .wait_for("a full warm pool of real pods", || async {
            Ok(pool(&http).await.is_some_and(|p| p.warm as usize == WARM))
        })
        .await;
    if let Err(e) = full {
        let last = http.get(&format!("{BASE}/pool")).await.map(|a| a.status);
        panic!(
            "{e:#}; GET /pool last answered {last:?}; Traefik's log ends: {}",
            ingress.log_tail()
        );
    }
    println!(
        "real node: a full warm pool of real pods: {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    for pod in session_pods(&pods).await {
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some(node::NODE),
            "{} is on the real node",
            pod.name_any()
        );
        assert_eq!(
            containers_of(&node, &pod.name_any()),
            2,
            "{}: a sandbox and the server",
            pod.name_any()
        );
        assert!(pool_name(&pod).is_some());
        assert_restricted(
            node.container_pid(&pod.name_any(), "server").unwrap(),
            &pod.name_any(),
        );
    }
    // The chart's own pods: one provisioner and three edge servers, restricted too.
    let mut checked = Vec::new();
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        if let Some(component @ ("provisioner" | "server")) = label(&pod, common::labels::COMPONENT) {
            assert_restricted(
                node.container_pid(&pod.name_any(), component).unwrap(),
                &pod.name_any(),
            );
            checked.push(component.to_owned());
        }
    }
    checked.sort_unstable();
    assert_eq!(checked, ["provisioner", "server", "server", "server"]);

    // The production route, end to end.
    let report = e2e::smoke::run_with(BASE, Some(&certificate.pem), |line| {
        println!("real node: smoke: {line}")
    })
    .await
    .unwrap();
    println!(
        "real node: {:?} session in {:.1} ms; kill → first pong from the replacement {:.1} ms",
        report.source,
        report.provision_ms,
        report.recovery.as_secs_f64() * 1000.0
    );
    // The killed pod's containers are really gone, and the pool refills with real pods.
    let waited = Instant::now();
    node.cluster
        .wait_for("the killed pod's containers stopped", || async {
            Ok(running_in_job(&node, &report.pod) == 0)
        })
        .await
        .unwrap();
    println!(
        "real node: the killed pod's containers stopped: {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    let waited = Instant::now();
    node.cluster
        .wait_for("the pool refilled with ready real pods", || async {
            let live = session_pods(&pods).await;
            let warm = pool(&http)
                .await
                .is_some_and(|p| p.warm as usize == WARM && p.assigned == 0);
            Ok(warm && live.len() == WARM && live.iter().all(ready))
        })
        .await
        .unwrap();
    println!(
        "real node: the pool refilled with ready real pods: {:.1} s",
        waited.elapsed().as_secs_f64()
    );

    // The page from its own origin, in Chromium: a pod of its own through the ingress, samples, a kill, the
    // replacement named on the page, samples again.
    page_in_chromium(&origin, &http).await;
    site.abort();

    // An upgrade that changes the session pods' template: warm pods are replaced, an assigned one is kept.
    let session = new_session(&http, BASE, "wss://localhost/").await;
    let (mut socket, hello) = WsClient::connect_hello_tls(&session.websocket_url, tls.clone())
        .await
        .unwrap();
    assert_eq!(hello.name, session.pod.name.as_ref());
    socket.ping_pong(1).await.unwrap();
    let waited = Instant::now();
    node.cluster
        .wait_for("the pool refilled beside the session", || async {
            let live = session_pods(&pods).await;
            let status = pool(&http).await;
            let full = status
                .as_ref()
                .is_some_and(|p| p.warm as usize == WARM && p.assigned == 1);
            if full && live.len() == WARM + 1 && live.iter().all(ready) {
                return Ok(true);
            }
            // Said when the wait times out: what the pool looked like last.
            let ready = live.iter().filter(|p| ready(p)).count();
            anyhow::bail!("pool {status:?}; {} live session pods, {ready} ready", live.len())
        })
        .await
        .unwrap();
    println!(
        "real node: the pool refilled beside the session: {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    let warm_before: Vec<String> = session_pods(&pods)
        .await
        .iter()
        .filter_map(pool_name)
        .filter(|name| name != session.pod.name.as_ref())
        .collect();
    assert_eq!(warm_before.len(), WARM, "{warm_before:?}");
    let mut upgrade = vec!["upgrade", RELEASE, chart, "--wait", "--timeout", "3m"];
    let set = node::chart_values(WARM, &[&allowed, "session.resources.limits.memory=200Mi"]);
    upgrade.extend(set.iter().map(String::as_str));
    helm(&node, &upgrade);
    let waited = Instant::now();
    node.cluster
        .wait_for("warm pods of the new template, the assigned pod kept", || async {
            let live = session_pods(&pods).await;
            let names: Vec<String> = live.iter().filter_map(pool_name).collect();
            let renewed = live.iter().filter(|p| ready(p)).count() == WARM + 1
                && warm_before.iter().all(|old| !names.contains(old));
            Ok(renewed && names.iter().any(|n| n == session.pod.name.as_ref()))
        })
        .await
        .unwrap();
    println!(
        "real node: warm pods of the new template, the assigned pod kept: {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    socket.ping_pong(2).await.unwrap();
    drop(socket);

    // The chart's other kind of route, Traefik's own IngressRoute, read by its CRD provider: switched to by an
    // upgrade, on plain HTTP (with TLS, the chart asks cert-manager for the certificate, which is not run here).
    let crd_ingress = Traefik::start(
        &node,
        NAMESPACE,
        "127.0.0.1:80".parse().unwrap(),
        false,
        Routes::IngressRoute,
    )
    .await
    .unwrap();
    let mut switch = vec!["upgrade", RELEASE, chart, "--wait", "--timeout", "3m"];
    let set = node::chart_values(
        WARM,
        &[
            &allowed,
            "session.resources.limits.memory=200Mi",
            "ingress.kind=IngressRoute",
        ],
    );
    switch.extend(set.iter().map(String::as_str));
    helm(&node, &switch);
    let ingresses: Api<Ingress> = Api::namespaced(node.cluster.admin.clone(), NAMESPACE);
    let left = ingresses.list(&ListParams::default()).await.unwrap().items;
    assert!(left.is_empty(), "the Ingress is gone: {left:?}");
    let waited = Instant::now();
    let routed = node
        .cluster
        .wait_for("a full pool through the IngressRoute", || async {
            Ok(pool_at(&http, PLAIN)
                .await
                .is_some_and(|p| p.warm as usize == WARM))
        })
        .await;
    if let Err(e) = routed {
        panic!("{e:#}; Traefik's log ends: {}", crd_ingress.log_tail());
    }
    println!(
        "real node: the IngressRoute serves the pool: {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    let session = new_session(&http, PLAIN, "ws://localhost/").await;
    let (mut socket, hello) = WsClient::connect_hello(&session.websocket_url).await.unwrap();
    assert_eq!(hello.name, session.pod.name.as_ref());
    socket.ping_pong(1).await.unwrap();
    drop(socket);
    println!(
        "real node: through the IngressRoute: a session, and the edge to its pod {}",
        session.pod.name
    );
    drop(crd_ingress);

    // Uninstalled, nothing of the release is left: no Job, no pod, no running container.
    helm(&node, &["uninstall", RELEASE, "--wait", "--timeout", "2m"]);
    let waited = Instant::now();
    node.cluster
        .wait_for("no Job, pod or running container of the release", || async {
            let jobs_left = jobs.list(&ListParams::default()).await?.items.len();
            let pods_left = pods.list(&ListParams::default()).await?.items.len();
            let containers = running(&node, "labels.\"io.kubernetes.pod.namespace\"==showcase");
            Ok(jobs_left == 0 && pods_left == 0 && containers == 0)
        })
        .await
        .unwrap();
    println!(
        "real node: no Job, pod or running container of the release: {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    drop(ingress);
    println!(
        "real node: the whole test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
