//! The Kubernetes backend against a real control plane (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kwok; see `testkit::cluster`), one fresh cluster per test.
//!
//! The provisioner runs in process and authenticates as the chart's ServiceAccount, bound to the chart's
//! Role (rendered by Helm from `helm/resume-showcase`): every scenario passing proves that Role is enough,
//! and the denied requests at the end of the first one prove it is not more than the namespace needs.
//! kwok pods run no containers, so the WebSocket data path is tested elsewhere (edge proxy, local backend).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use common::api::{CreateSessionResponse, ProvisionSource, SessionState};
use common::labels;
use common::labels::{JOB_NAME as JOB_NAME_LABEL, SESSION_STARTED_ANNOTATION};
use common::signing::SigningKey;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use provisioner::backend::kubernetes::KubernetesBackend;
use provisioner::backend::kubernetes::pods;
use serde_json::json;
use support::{ROUTE_KEY, SIGNING_KEY, TestProvisioner, WAIT};
use testkit::cluster::Cluster;
use testkit::spawn::Service;
use tokio::sync::mpsc;

const NAMESPACE: &str = "showcase";
const RELEASE: &str = "demo";
const EDGE: &str = "wss://edge.test";

/// Objects of the pool (pods or Jobs) that are not being deleted.
async fn live_pool_objects<K>(api: &Api<K>) -> Vec<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let listed = api
        .list(&ListParams::default().labels(&labels::pool_selector()))
        .await
        .unwrap();
    listed
        .items
        .into_iter()
        .filter(|object| object.meta().deletion_timestamp.is_none())
        .collect()
}

/// A cluster with the namespace and the chart's provisioner RBAC, and a client acting as that account.
struct Env {
    cluster: Cluster,
    provisioner_client: Client,
    provisioner_kubeconfig: std::path::PathBuf,
}

impl Env {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var_os("RUST_LOG").is_some() {
            common::runtime::init_tracing();
        }
        let cluster = Cluster::start().await.unwrap();
        let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/resume-showcase");
        let account = cluster
            .with_provisioner_rbac(NAMESPACE, RELEASE, &chart)
            .await
            .unwrap();
        let provisioner_kubeconfig = cluster
            .service_account_kubeconfig(NAMESPACE, &account)
            .await
            .unwrap();
        let provisioner_client = cluster.service_account_client(NAMESPACE, &account).await.unwrap();
        Self {
            cluster,
            provisioner_client,
            provisioner_kubeconfig,
        }
    }

    async fn provisioner(&self, flags: &[&str]) -> TestProvisioner<KubernetesBackend> {
        let (config, backend, receiver) = self.backend(flags).await;
        TestProvisioner::serve(config, backend, receiver).await
    }

    /// A provisioner whose backend holds its first `step` at the returned gate.
    async fn gated(
        &self,
        flags: &[&str],
        step: support::Step,
    ) -> (
        TestProvisioner<support::Gated<KubernetesBackend>>,
        std::sync::Arc<support::Gate>,
    ) {
        let (config, inner, receiver) = self.backend(flags).await;
        let gate = support::Gate::new(step);
        let backend = support::Gated {
            inner,
            gate: gate.clone(),
        };
        (TestProvisioner::serve(config, backend, receiver).await, gate)
    }

    async fn backend(
        &self,
        flags: &[&str],
    ) -> (
        provisioner::Config,
        KubernetesBackend,
        mpsc::UnboundedReceiver<provisioner::backend::PodEvent>,
    ) {
        let mut all = vec![
            "--backend",
            "kubernetes",
            "--namespace",
            NAMESPACE,
            "--edge-url",
            EDGE,
            "--session-label",
            "app.kubernetes.io/instance=demo",
            "--route-key",
            ROUTE_KEY,
            // These tests hold many sessions from one address (the test itself), and ask for them at once.
            "--max-sessions-per-client",
            "1000",
            "--requests-per-second",
            "1000",
        ];
        all.extend_from_slice(flags);
        let config = support::config(&all);
        let settings = provisioner::kube_settings(&config, "default").unwrap();
        let (events, receiver) = mpsc::unbounded_channel();
        let backend = KubernetesBackend::start(self.provisioner_client.clone(), settings, events)
            .await
            .unwrap();
        (config, backend, receiver)
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.cluster.admin.clone(), NAMESPACE)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.cluster.admin.clone(), NAMESPACE)
    }

    /// The real provisioner binary in cluster mode as the chart's account (its kubeconfig), with the test key,
    /// on a free loopback port, resyncing every 500 ms; callers add their own flags.
    fn provisioner_binary(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"));
        command
            .env("KUBECONFIG", &self.provisioner_kubeconfig)
            .env("SIGNING_KEY", SIGNING_KEY)
            .env("ROUTE_KEY", ROUTE_KEY)
            .env("MAX_SESSIONS_PER_CLIENT", "1000")
            .env("REQUESTS_PER_SECOND", "1000")
            .args(["--backend", "kubernetes", "--bind", "127.0.0.1", "--port", "0"])
            .args(["--edge-url", EDGE, "--resync-interval", "500ms"]);
        command
    }

    /// Live (not deleting) pods of the pool, by the admin's reading of the cluster.
    async fn pool_pods(&self) -> Vec<Pod> {
        live_pool_objects(&self.pods()).await
    }

    /// Jobs of the pool that are not being deleted.
    async fn pool_jobs(&self) -> Vec<Job> {
        live_pool_objects(&self.jobs()).await
    }

    /// The live pods labelled for `session`.
    async fn pods_of(&self, session: &str) -> Vec<Pod> {
        self.pool_pods()
            .await
            .into_iter()
            .filter(|p| p.labels().get(labels::SESSION_ID).map(String::as_str) == Some(session))
            .collect()
    }

    async fn until(&self, what: &str, check: impl AsyncFn(&Self) -> bool) {
        self.cluster
            .wait_for(what, || async { Ok(check(self).await) })
            .await
            .unwrap();
    }
}

fn label<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.labels().get(key).map(String::as_str)
}

async fn until_pool<B: provisioner::backend::Backend + Clone>(
    p: &TestProvisioner<B>,
    what: &str,
    condition: impl Fn(&common::api::PoolStatus) -> bool,
) {
    p.until_pool(what, condition).await;
}

#[tokio::test]
async fn pool_fills_sessions_are_labelled_killed_replaced_and_capped() {
    let env = Env::start().await;
    let p = env
        .provisioner(&["--warm-pool-size", "2", "--max-sessions", "3"])
        .await;
    until_pool(&p, "two warm pods", |s| s.warm == 2 && s.starting == 0).await;
    let jobs = env.pool_jobs().await;
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(job.labels()["app.kubernetes.io/instance"], "demo");
    }
    for pod in env.pool_pods().await {
        assert_eq!(label(&pod, labels::ASSIGNED), Some("false"));
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert!(
            node.as_deref().is_some_and(|n| n.starts_with("kwok-node-")),
            "{:?} {:?}",
            pod.metadata,
            pod.status
        );
    }

    // A session gets a warm pod, relabelled in the cluster.
    let session: CreateSessionResponse = p.create_ok().await;
    assert_eq!(session.source, ProvisionSource::Warm);
    let mine = env.pods_of(&session.session_id).await;
    assert_eq!(mine.len(), 1);
    let pod = &mine[0];
    assert_eq!(label(pod, labels::ASSIGNED), Some("true"));
    assert_eq!(label(pod, JOB_NAME_LABEL), Some(session.pod.name.as_str()));
    assert!(pod.annotations().contains_key(SESSION_STARTED_ANNOTATION));
    assert_eq!(session.pod.node, pod.spec.as_ref().unwrap().node_name);
    // The Job is relabelled just after the claim, off the request's path.
    env.until("the Job relabelled", async |env| {
        let job = env.jobs().get(&session.pod.name).await.unwrap();
        job.labels().get(labels::SESSION_ID).map(String::as_str) == Some(session.session_id.as_str())
    })
    .await;
    let job = env.jobs().get(&session.pod.name).await.unwrap();
    let deadline = job.spec.unwrap().active_deadline_seconds.unwrap();
    assert!((3600..3600 + 120).contains(&deadline), "{deadline}");

    // Its WebSocket URL is a signed route to that pod through the edge.
    let prefix = format!("{EDGE}/ws/session/{}?token=", session.session_id);
    let token = session.websocket_url.strip_prefix(&prefix).unwrap();
    let key = SigningKey::new(ROUTE_KEY.as_bytes()).unwrap();
    let route = key.verify_route(token, &session.session_id, 0).unwrap();
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert_eq!(route.addr, format!("{ip}:8080"));
    assert_eq!(route.pod, session.pod.name.as_str());
    // Short-lived: a route is for connecting now; a reconnect asks GET /session/{id} for a fresh one.
    let now = common::runtime::unix_time_ms() / 1000;
    assert!(
        route.exp > now && route.exp <= now + 61,
        "the route expires in {} s, not within the 60 s route TTL",
        route.exp.saturating_sub(now)
    );
    let fresh = p
        .status(&session.session_id, &session.token)
        .await
        .websocket_url
        .unwrap();
    let fresh = key
        .verify_route(fresh.strip_prefix(&prefix).unwrap(), &session.session_id, now)
        .unwrap();
    assert!(
        fresh.exp >= route.exp,
        "GET /session/{{id}} signs a route of its own"
    );

    until_pool(&p, "the pool refilled", |s| s.warm == 2 && s.assigned == 1).await;

    // Kill: the pod is deleted through the API, the session gets another one, the pool refills.
    let killed = p
        .authorized(
            reqwest::Method::POST,
            &format!("/session/{}/kill", session.session_id),
            &session.token,
        )
        .await;
    assert_eq!(killed.status(), 202);
    let old_pod = pod.name_any();
    env.until("the killed pod deleted", async |env| {
        env.pods()
            .get_opt(&old_pod)
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    env.until("the session active on a new pod", async |_| {
        let status = p.status(&session.session_id, &session.token).await;
        status.state == SessionState::Active && status.pod.is_some_and(|pod| pod.name != session.pod.name)
    })
    .await;
    let status = p.status(&session.session_id, &session.token).await;
    assert_eq!(status.replacements, 1);
    let replacement = env.pods_of(&session.session_id).await;
    assert_eq!(
        replacement.len(),
        1,
        "exactly one live pod labelled for the session"
    );
    assert_eq!(
        label(&replacement[0], JOB_NAME_LABEL),
        Some(status.pod.unwrap().name.as_str())
    );
    until_pool(&p, "the pool refilled after the kill", |s| {
        s.warm == 2 && s.assigned == 1
    })
    .await;

    // The cap: three sessions, then 429; pods never exceed warm + max sessions.
    let _second = p.create_ok().await;
    let _third = p.create_ok().await;
    let refused = p.create().await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    until_pool(&p, "a full house", |s| s.assigned == 3 && s.warm == 2).await;
    assert!(env.pool_jobs().await.len() <= 5);

    // The Role is enough for all of the above, and no more.
    let denied = |result: Result<_, kube::Error>| matches!(result, Err(kube::Error::Api(status)) if status.code == 403);
    let client = env.provisioner_client.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    assert!(denied(secrets.list(&ListParams::default()).await.map(|_| ())));
    let elsewhere: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert!(denied(elsewhere.list(&ListParams::default()).await.map(|_| ())));
    let own_pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    assert!(denied(
        own_pods.create(&PostParams::default(), &bare).await.map(|_| ())
    ));
    p.stop().await;
}

#[tokio::test]
async fn a_restarted_provisioner_adopts_sessions_collects_orphans_and_renews_old_warm_pods() {
    let env = Env::start().await;
    let first = env.provisioner(&["--warm-pool-size", "2"]).await;
    until_pool(&first, "two warm pods", |s| s.warm == 2).await;
    let session = first.create_ok().await;
    until_pool(&first, "refilled", |s| s.warm == 2 && s.assigned == 1).await;
    first.stop().await;
    // Stopping leaves the pods to the cluster.
    assert_eq!(env.pool_jobs().await.len(), 3);

    // An orphan: a pod labelled for a session nobody holds, assigned two hours ago.
    let ghost = env
        .pool_pods()
        .await
        .into_iter()
        .find(|p| label(p, labels::ASSIGNED) == Some("false"))
        .unwrap();
    let two_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 2 * 3600 * 1000;
    let patch = json!({"metadata": {
        "labels": {labels::ASSIGNED: "true", labels::SESSION_ID: "ghost"},
        "annotations": {SESSION_STARTED_ANNOTATION: two_hours_ago.to_string()},
    }});
    env.pods()
        .patch(&ghost.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let ghost_job = label(&ghost, JOB_NAME_LABEL).unwrap().to_owned();

    // The second provisioner comes with a new session image, as after an upgrade.
    let second = env
        .provisioner(&[
            "--warm-pool-size",
            "1",
            "--session-image",
            "registry.example/server:2",
        ])
        .await;
    // The session lives on with the same pod and token.
    let status = second.status(&session.session_id, &session.token).await;
    assert_eq!(status.state, SessionState::Active);
    assert_eq!(status.pod.unwrap().name, session.pod.name);
    // The orphan is past the maximum session age: collected.
    env.until("the orphan's Job deleted", async |env| {
        env.jobs()
            .get_opt(&ghost_job)
            .await
            .unwrap()
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    until_pool(&second, "one warm, one assigned", |s| {
        s.warm == 1 && s.assigned == 1
    })
    .await;
    let live: BTreeSet<String> = env.pool_jobs().await.iter().map(ResourceExt::name_any).collect();
    assert_eq!(live.len(), 2, "adopted, not duplicated: {live:?}");
    assert!(live.contains(session.pod.name.as_str()));
    second.stop().await;
}

#[tokio::test]
async fn two_replicas_racing_fifty_sessions_never_share_a_pod() {
    let env = Env::start().await;
    let flags = [
        "--warm-pool-size",
        "4",
        "--max-sessions",
        "60",
        "--max-starting",
        "8",
        "--cold-start-timeout",
        "60s",
        "--sessions-per-minute",
        "1000",
        "--session-burst",
        "100",
    ];
    let a = env.provisioner(&flags).await;
    let b = env.provisioner(&flags).await;
    until_pool(&a, "a warm pool", |s| s.warm >= 4).await;
    let requests = (0..50).map(|i| {
        let p = if i % 2 == 0 { &a } else { &b };
        async move { p.create_ok().await }
    });
    let sessions = futures_util::future::join_all(requests).await;

    let pods: BTreeSet<&str> = sessions.iter().map(|s| s.pod.name.as_str()).collect();
    assert_eq!(pods.len(), 50, "every session got its own pod");
    // The cluster agrees: each claimed pod carries exactly its session's label.
    let labelled: BTreeMap<String, String> = env
        .pool_pods()
        .await
        .iter()
        .filter(|p| label(p, labels::ASSIGNED) == Some("true"))
        .map(|p| {
            (
                label(p, JOB_NAME_LABEL).unwrap().to_owned(),
                label(p, labels::SESSION_ID).unwrap().to_owned(),
            )
        })
        .collect();
    for session in &sessions {
        assert_eq!(
            labelled.get(session.pod.name.as_str()).map(String::as_str),
            Some(session.session_id.as_str()),
            "pod {} in the cluster",
            session.pod.name
        );
    }
    // Either replica answers for any session (tokens are derived, sessions adopted from labels).
    let other = &sessions[0];
    env.until("replica b knows a's session", async |_| {
        let response = b
            .authorized(
                reqwest::Method::GET,
                &format!("/session/{}", other.session_id),
                &other.token,
            )
            .await;
        response.status() == 200
    })
    .await;
    assert_eq!(
        b.status(&other.session_id, &other.token).await.pod.unwrap().name,
        other.pod.name
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_binary_runs_in_cluster_mode_and_a_crashed_pod_is_replaced_and_collected() {
    let env = Env::start().await;
    let mut command = env.provisioner_binary();
    command
        .args(["--warm-pool-size", "1"])
        .args(["--session-ttl-after-finished", "1s"]);
    let Service {
        mut child, address, ..
    } = Service::start(command, "provisioner listening", WAIT)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{address}{path}");
    support::until_pool(&http, &url(""), "a warm pod", |pool| pool.warm == 1).await;
    let response = http.post(url("/session")).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let session: CreateSessionResponse = response.json().await.unwrap();

    // The session's pod crashes (its container fails): the session gets another pod, the failed Job goes.
    let pod = env.pods_of(&session.session_id).await.remove(0);
    let failed = json!({"status": {"phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}]}});
    env.pods()
        .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&failed))
        .await
        .unwrap();
    env.until("a replacement pod for the session", async |env| {
        let pods = env.pods_of(&session.session_id).await;
        pods.iter()
            .any(|p| p.name_any() != pod.name_any() && pods::is_ready(p))
    })
    .await;
    env.until("the failed Job collected", async |env| {
        env.jobs().get_opt(&session.pod.name).await.unwrap().is_none()
    })
    .await;
    let status: common::api::SessionStatus = http
        .get(url(&format!("/session/{}", session.session_id)))
        .bearer_auth(&session.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((status.state, status.replacements), (SessionState::Active, 1));

    // SIGTERM: the process exits cleanly and leaves the pods to the cluster.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit}");
    assert_eq!(
        env.pool_jobs().await.len(),
        2,
        "the session's pod and the warm one stay"
    );
}

#[tokio::test]
async fn a_provisioner_killed_mid_assignment_leaves_no_pod_twice_assigned_and_orphans_are_collected() {
    let env = Env::start().await;
    let spawn = |extra: &'static [&'static str]| {
        let mut command = env.provisioner_binary();
        command
            .args(["--max-sessions", "30"])
            .args([
                "--sessions-per-minute",
                "1000",
                "--session-burst",
                "100",
                "--cold-start-timeout",
                "60s",
            ])
            .args(extra);
        Service::start(command, "provisioner listening", WAIT)
    };
    let Service {
        child: mut first,
        address,
    } = spawn(&["--warm-pool-size", "3"]).await.unwrap();
    let http = reqwest::Client::new();
    support::until_pool(&http, &format!("http://{address}"), "three warm pods", |pool| {
        pool.warm == 3
    })
    .await;

    // Twenty sessions at once; SIGKILL as soon as the first three (the warm ones) are answered, while the
    // rest wait for cold pods and claims are in flight.
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..20 {
        let request = http.post(format!("http://{address}/session")).send();
        let answered = answered_tx.clone();
        tokio::spawn(async move {
            if let Ok(response) = request.await
                && response.status() == 201
                && let Ok(session) = response.json::<CreateSessionResponse>().await
            {
                let _ = answered.send(session);
            }
        });
    }
    drop(answered_tx);
    let mut created = Vec::new();
    while created.len() < 3 {
        created.push(answered_rx.recv().await.unwrap());
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    while let Some(session) = answered_rx.recv().await {
        created.push(session);
    }

    // A new provisioner takes over: every session a client holds keeps its pod, and no pod serves two.
    let Service {
        child: _second,
        address,
    } = spawn(&["--warm-pool-size", "3", "--session-idle-timeout", "8s"])
        .await
        .unwrap();
    for session in &created {
        let status: common::api::SessionStatus = http
            .get(format!("http://{address}/session/{}", session.session_id))
            .bearer_auth(&session.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status.state, SessionState::Active);
        assert_eq!(
            status.pod.unwrap().name,
            session.pod.name,
            "a held session kept its pod"
        );
    }
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in env.pool_pods().await {
        if let Some(session) = label(&pod, labels::SESSION_ID) {
            owners.entry(session.to_owned()).or_default().push(pod.name_any());
        }
    }
    for (session, pods) in &owners {
        assert_eq!(pods.len(), 1, "session {session} holds {pods:?}");
    }
    // Sessions claimed for requests the kill cut off have no client: nobody uses them, so they are collected
    // as idle (kwok pods cannot report activity; nothing else keeps them alive either).
    env.until("every assigned pod collected", async |env| {
        env.pool_pods()
            .await
            .iter()
            .all(|p| label(p, labels::ASSIGNED) == Some("false"))
    })
    .await;
}

#[tokio::test]
async fn a_session_ended_on_one_replica_is_never_brought_back_by_the_other() {
    let env = Env::start().await;
    let flags = ["--warm-pool-size", "1"];
    let a = env.provisioner(&flags).await;
    let b = env.provisioner(&flags).await;
    until_pool(&a, "a warm pod", |s| s.warm >= 1).await;
    let session = a.create_ok().await;
    let path = format!("/session/{}", session.session_id);
    env.until("replica b knows the session", async |_| {
        b.authorized(reqwest::Method::GET, &path, &session.token)
            .await
            .status()
            == 200
    })
    .await;
    let ended = a.authorized(reqwest::Method::DELETE, &path, &session.token).await;
    assert_eq!(ended.status(), 204);
    // For the next 30 s no pod serves the session again: replica b read the ending from the cluster, it did not
    // take it for a pod the session lost.
    let watching = std::time::Instant::now();
    while watching.elapsed() < std::time::Duration::from_secs(30) {
        let pods = env.pods_of(session.session_id.as_str()).await;
        let replacement = pods
            .iter()
            .find(|p| label(p, JOB_NAME_LABEL) != Some(session.pod.name.as_str()));
        assert!(
            replacement.is_none(),
            "the ended session got a pod again: {replacement:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    for p in [&a, &b] {
        assert_eq!(
            p.status(&session.session_id, &session.token).await.state,
            SessionState::Ended
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_starting_pod_found_by_a_restarted_provisioner_expires() {
    let env = Env::start().await;
    // What a provisioner that crashed right after creating it leaves: a pool Job whose pod never gets ready
    // (no node matches it).
    // Labelled for this release, as its provisioner labels every pod (others' pods are not its to expire).
    let spec = provisioner::backend::kubernetes::manifest::SessionPodSpec {
        extra_labels: BTreeMap::from([("app.kubernetes.io/instance".to_owned(), "demo".to_owned())]),
        ..Default::default()
    };
    let mut job = provisioner::backend::kubernetes::manifest::job("session-stuck", &spec);
    if let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.node_selector = Some(BTreeMap::from([("no-such-node".to_owned(), "true".to_owned())]));
    }
    env.jobs().create(&PostParams::default(), &job).await.unwrap();
    env.until("the stuck pod exists", async |env| {
        !env.pool_pods().await.is_empty()
    })
    .await;
    let p = env
        .provisioner(&["--warm-pool-size", "0", "--pod-start-timeout", "2s"])
        .await;
    env.until("the stuck Job deleted", async |env| {
        env.jobs().get_opt("session-stuck").await.unwrap().is_none()
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn a_client_that_hangs_up_during_the_claim_leaks_no_pod() {
    use tokio::io::AsyncWriteExt;
    let env = Env::start().await;
    let (p, gate) = env
        .gated(
            &["--warm-pool-size", "1", "--first-connect-timeout", "10m"],
            support::Step::Claim,
        )
        .await;
    until_pool(&p, "a warm pod", |s| s.warm == 1).await;
    let mut stream = tokio::net::TcpStream::connect(p.address).await.unwrap();
    let head = format!(
        "POST /session HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n\r\n",
        p.address
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The claim is written in the cluster (the pod is labelled for the new session) when the client hangs up.
    gate.reached().await;
    let claimed: Vec<Pod> = env
        .pool_pods()
        .await
        .into_iter()
        .filter(|pod| label(pod, labels::ASSIGNED) == Some("true"))
        .collect();
    assert_eq!(claimed.len(), 1, "the claim landed");
    drop(stream);
    // The provisioner has noticed the hang-up before the claim goes on.
    p.until_metric("provisioner_client_hangups_total", 1.0).await;
    gate.release();
    p.until_metric("provisioner_sessions_ended_total{reason=\"client_gone\"}", 1.0)
        .await;
    let claimed_job = label(&claimed[0], JOB_NAME_LABEL).unwrap().to_owned();
    env.until(
        "the claimed pod's Job deleted, a warm one in its place",
        async |env| {
            let pods = env.pool_pods().await;
            env.jobs().get_opt(&claimed_job).await.unwrap().is_none()
                && pods
                    .iter()
                    .all(|pod| label(pod, labels::ASSIGNED) == Some("false"))
                && !pods.is_empty()
        },
    )
    .await;
    p.stop().await;
}

#[tokio::test]
async fn two_releases_in_one_namespace_keep_their_pools_apart() {
    let env = Env::start().await;
    // `provisioner` labels its pods app.kubernetes.io/instance=demo; the second release says "other".
    let demo = env.provisioner(&["--warm-pool-size", "1"]).await;
    let other = env
        .provisioner(&[
            "--warm-pool-size",
            "2",
            "--session-label",
            "app.kubernetes.io/instance=other",
        ])
        .await;
    until_pool(&demo, "demo's warm pod", |s| s.warm == 1).await;
    until_pool(&other, "other's warm pods", |s| s.warm == 2).await;
    let instances: Vec<String> = env
        .pool_pods()
        .await
        .iter()
        .map(|p| {
            label(p, "app.kubernetes.io/instance")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(instances.len(), 3, "{instances:?}");
    assert_eq!(instances.iter().filter(|i| *i == "demo").count(), 1);
    assert_eq!(instances.iter().filter(|i| *i == "other").count(), 2);
    // Neither adopted the other's: their counts are their own.
    assert_eq!(demo.pool().await.warm, 1);
    assert_eq!(other.pool().await.warm, 2);
    demo.stop().await;
    other.stop().await;
}
