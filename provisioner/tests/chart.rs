//! The Helm chart (`helm/resume-showcase`) with real Helm: lint, render, the values schema refusing bad
//! values, every rendered object validated by a real API server, and a real install → session Jobs →
//! uninstall cycle on a real control plane (`testkit::cluster`).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use provisioner::backend::kubernetes::KubernetesBackend;
use support::TestProvisioner;
use testkit::cluster::{self, Cluster};
use tokio::sync::mpsc;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../helm/resume-showcase");
const NAMESPACE: &str = "showcase";
/// The Kubernetes version the chart is rendered for without a cluster (the test control plane's line).
const KUBE_VERSION: &str = "1.36.0";

async fn template(extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec![
        "template",
        "demo",
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ];
    args.extend_from_slice(extra);
    cluster::helm(&args).await
}

#[tokio::test]
async fn the_chart_lints_renders_and_its_schema_refuses_bad_values() {
    cluster::helm(&["lint", CHART, "--strict", "--kube-version", KUBE_VERSION])
        .await
        .unwrap();
    let kinds = |yaml: &str| -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for line in yaml.lines().filter_map(|l| l.strip_prefix("kind: ")) {
            *kinds.entry(line.to_owned()).or_default() += 1;
        }
        kinds
    };
    let default = kinds(&template(&[]).await.unwrap());
    for (kind, count) in [
        ("StatefulSet", 2),
        ("Service", 4),
        ("ServiceAccount", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Secret", 1),
        ("ConfigMap", 1),
        ("NetworkPolicy", 1),
        ("PodDisruptionBudget", 1),
        ("ResourceQuota", 1),
        ("Ingress", 1),
    ] {
        assert_eq!(default.get(kind), Some(&count), "{kind} in {default:?}");
    }
    let traefik = kinds(&template(&["--set", "ingress.kind=IngressRoute"]).await.unwrap());
    assert_eq!(traefik.get("IngressRoute"), Some(&1));
    assert_eq!(traefik.get("Certificate"), Some(&1));
    assert!(!traefik.contains_key("Ingress"));
    let existing = kinds(
        &template(&["--set", "signingKey.existingSecret=mine"])
            .await
            .unwrap(),
    );
    assert!(
        !existing.contains_key("Secret"),
        "an existing Secret is used, not generated"
    );
    let two = kinds(&template(&["--set", "provisioner.replicas=2"]).await.unwrap());
    assert_eq!(two.get("PodDisruptionBudget"), Some(&2));
    // As a subchart: a parent's `global` values are accepted.
    template(&["--set", "global.imageRegistry=registry.example"])
        .await
        .expect("global values are allowed");
    // Session Jobs get the chart's pull policy and pull secrets (the provisioner passes them on).
    let private = template(&[
        "--set",
        "imagePullSecrets[0].name=ghcr",
        "--set",
        "image.pullPolicy=Always",
    ])
    .await
    .unwrap();
    assert!(
        private.contains(r#"{name: SESSION_IMAGE_PULL_SECRETS, value: "ghcr"}"#),
        "{private}"
    );
    assert!(private.contains(r#"{name: SESSION_IMAGE_PULL_POLICY, value: "Always"}"#));
    // The edge servers mount the route key only, never the session-token key.
    let rendered = template(&[]).await.unwrap();
    let server = rendered
        .split("\n---")
        .find(|doc| doc.contains("kind: StatefulSet") && doc.contains("name: demo-resume-showcase-server\n"))
        .expect("the server StatefulSet");
    assert!(server.contains("key: route-key"), "{server}");
    assert!(
        !server.contains("key: signing-key") && !server.contains("SIGNING_KEY"),
        "{server}"
    );

    for bad in [
        "warmPoolSize=-1",
        "maxSessions=0",
        "session.resources.limits.cpu=lots",
        "session.maxAge=forever",
        "typo=1",
        "ingress.kind=Gateway",
        "provisioner.replicas=0",
        "allowedOrigins[0]=not-an-origin",
        "ingress.tls.issuer.kind=Someone",
        "trustedProxies[0]=the-ingress",
        "maxSessionsPerClient=0",
        "server.tolerations[0].operator=Sometimes",
        "session.podLabels.app\\.kubernetes\\.io/name=mine",
        "provisioner.priorityClassName=Not_A_Name",
        "session.topologySpreadConstraints[0].maxSkew=0",
        "metrics.serviceMonitor.interval=often",
        "metrics.typo=1",
        "server.affinity.nodeAfinity.x=1",
    ] {
        let refused = template(&["--set", bad]).await;
        let error = refused.expect_err(bad).to_string();
        assert!(error.contains("schema"), "{bad}: {error}");
    }
}

/// A values file of one test's own, removed when dropped.
struct ValuesFile(std::path::PathBuf);

impl ValuesFile {
    fn to_str(&self) -> Option<&str> {
        self.0.to_str()
    }
}

impl Drop for ValuesFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A values file with every scheduling value set for the three kinds of pods, and both monitors on.
fn production_values() -> ValuesFile {
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let scheduling = |who: &str| {
        format!(
            r#"
  nodeSelector: {{pool: {who}}}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/os, operator: In, values: [linux]}}]}}]
  tolerations: [{{key: dedicated, operator: Equal, value: {who}, effect: NoSchedule}}]
  topologySpreadConstraints:
    - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}}
  priorityClassName: {who}-priority
  podAnnotations: {{example.com/who: {who}}}
  podLabels: {{team: {who}}}"#
        )
    };
    let values = format!(
        "provisioner:{}\nserver:{}\nsession:{}\nmetrics:\n  serviceMonitor: {{enabled: true, labels: {{release: prom}}}}\n  podMonitor: {{enabled: true}}\n",
        scheduling("provisioner"),
        scheduling("server"),
        scheduling("session"),
    );
    let path = std::env::temp_dir().join(format!(
        "showcase-production-values-{}-{}.yaml",
        std::process::id(),
        FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, values).unwrap();
    ValuesFile(path)
}

fn document(rendered: &str, kind: &str, name: &str) -> serde_json::Value {
    let objects: Vec<Option<serde_json::Value>> = serde_saphyr::from_multiple(rendered).unwrap();
    objects
        .into_iter()
        .flatten()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[tokio::test]
async fn scheduling_values_reach_every_pod_and_the_monitors_scrape_what_the_policy_admits() {
    let values = production_values();
    let rendered = template(&["-f", values.to_str().unwrap()]).await.unwrap();
    for (component, name) in [
        ("provisioner", "demo-resume-showcase-provisioner"),
        ("server", "demo-resume-showcase-server"),
    ] {
        let pod = &document(&rendered, "StatefulSet", name)["spec"]["template"];
        assert_eq!(pod["spec"]["nodeSelector"]["pool"], component, "{pod}");
        assert_eq!(pod["spec"]["tolerations"][0]["value"], component);
        assert_eq!(pod["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
        assert_eq!(pod["spec"]["priorityClassName"], format!("{component}-priority"));
        assert!(pod["spec"]["affinity"]["nodeAffinity"].is_object());
        assert_eq!(pod["metadata"]["annotations"]["example.com/who"], component);
        assert_eq!(pod["metadata"]["labels"]["team"], component);
        assert_eq!(
            pod["metadata"]["labels"]["app.kubernetes.io/component"],
            component
        );
    }
    // Session pods: the provisioner gets them as JSON, and reads that JSON back the way it parses its flag.
    let provisioner = document(&rendered, "StatefulSet", "demo-resume-showcase-provisioner");
    let env = provisioner["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let json = env
        .iter()
        .find(|e| e["name"] == "SESSION_POD_TEMPLATE")
        .and_then(|e| e["value"].as_str())
        .unwrap();
    let session = provisioner::backend::kubernetes::manifest::SessionPodTemplate::parse(json).unwrap();
    assert_eq!(session.node_selector["pool"], "session");
    assert_eq!(session.tolerations[0].value.as_deref(), Some("session"));
    assert_eq!(session.priority_class_name.as_deref(), Some("session-priority"));
    assert_eq!(session.labels["team"], "session");
    assert_eq!(session.annotations["example.com/who"], "session");
    assert!(session.affinity.is_some() && session.topology_spread_constraints.len() == 1);

    // The ServiceMonitor selects exactly the two headless Services, whose port is named as it says.
    let monitor = document(&rendered, "ServiceMonitor", "demo-resume-showcase");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let objects: Vec<Option<serde_json::Value>> = serde_saphyr::from_multiple(&rendered).unwrap();
    let selected: Vec<String> = objects
        .iter()
        .flatten()
        .filter(|o| o["kind"] == "Service")
        .filter(|o| selector.iter().all(|(k, v)| o["metadata"]["labels"][k] == *v))
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        selected,
        [
            "demo-resume-showcase-provisioner-headless",
            "demo-resume-showcase-server-headless"
        ]
    );
    let pods = document(&rendered, "PodMonitor", "demo-resume-showcase-sessions");
    assert_eq!(
        pods["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "session"
    );
    // With the PodMonitor on, the session pods' policy admits the monitoring namespace on the metrics port.
    let policy = document(&rendered, "NetworkPolicy", "demo-resume-showcase-sessions");
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{policy}");
    assert_eq!(
        rules[1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(rules[1]["ports"][0]["port"], 8080);
    // Off by default: no monitors, and the policy admits only the edge and the provisioner.
    let default = template(&[]).await.unwrap();
    assert!(!default.contains("kind: ServiceMonitor") && !default.contains("kind: PodMonitor"));
    let policy = document(&default, "NetworkPolicy", "demo-resume-showcase-sessions");
    assert_eq!(policy["spec"]["ingress"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_argocd_project_allows_what_the_chart_renders_and_the_application_points_at_it() {
    let read = |file: &str| -> serde_json::Value {
        let path = format!("{CHART}/../argocd/{file}");
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let project = read("appproject.yaml");
    let application = read("application.yaml");
    assert_eq!(project["kind"], "AppProject");
    assert_eq!(application["kind"], "Application");
    assert_eq!(application["spec"]["project"], project["metadata"]["name"]);
    let path = application["spec"]["source"]["path"].as_str().unwrap();
    let chart = std::path::Path::new(CHART)
        .join("../..")
        .join(path)
        .join("Chart.yaml");
    assert!(chart.is_file(), "{}", chart.display());
    // GitOps cannot keep a generated key (no `lookup` in ArgoCD): the Application names an existing Secret.
    let values = &application["spec"]["source"]["helm"]["valuesObject"];
    assert!(
        values["signingKey"]["existingSecret"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );

    let allowed: Vec<(String, String)> = project["spec"]["namespaceResourceWhitelist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["group"].as_str().unwrap().to_owned(),
                k["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let production = production_values();
    let production = ["-f", production.to_str().unwrap()];
    for variant in [
        &[][..],
        &["--set", "ingress.kind=IngressRoute"][..],
        &production[..],
    ] {
        let rendered = template(variant).await.unwrap();
        let objects: Vec<Option<serde_json::Value>> = serde_saphyr::from_multiple(&rendered).unwrap();
        for object in objects.into_iter().flatten() {
            let api_version = object["apiVersion"].as_str().unwrap();
            let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
            let kind = object["kind"].as_str().unwrap();
            assert!(
                allowed.iter().any(|(g, k)| g == group && k == kind),
                "the AppProject does not allow {group}/{kind}"
            );
        }
    }
}

#[tokio::test]
async fn the_chart_installs_runs_sessions_and_uninstalls_without_leftovers() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::start().await.unwrap();
    cluster.create_namespace(NAMESPACE).await.unwrap();
    let version = cluster.version().await.unwrap();

    // Every object the chart renders passes the API server's own strict validation.
    let rendered = template(&["--kube-version", &version]).await.unwrap();
    let validated = cluster.validate_yaml(NAMESPACE, &rendered).await.unwrap();
    assert_eq!(validated, 15);
    // So do the scheduling values' (the monitors need the Prometheus Operator's CRDs, which it has not).
    let values = production_values();
    let production = template(&[
        "--kube-version",
        &version,
        "-f",
        values.to_str().unwrap(),
        "--set",
        "metrics.serviceMonitor.enabled=false",
        "--set",
        "metrics.podMonitor.enabled=false",
    ])
    .await
    .unwrap();
    assert_eq!(cluster.validate_yaml(NAMESPACE, &production).await.unwrap(), 15);

    cluster
        .helm(&[
            "install",
            "demo",
            CHART,
            "--namespace",
            NAMESPACE,
            "--set",
            "warmPoolSize=2",
            "--set",
            "allowedOrigins[0]=https://me.github.io",
            "--wait",
            "--timeout",
            "2m",
        ])
        .await
        .unwrap();
    let admin = cluster.admin.clone();
    let sets: Api<StatefulSet> = Api::namespaced(admin.clone(), NAMESPACE);
    for (name, replicas) in [
        ("demo-resume-showcase-server", 3),
        ("demo-resume-showcase-provisioner", 1),
    ] {
        let status = sets.get(name).await.unwrap().status.unwrap();
        assert_eq!(status.ready_replicas, Some(replicas), "{name}");
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let chart_pods = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
        .await
        .unwrap();
    assert_eq!(chart_pods.items.len(), 4);
    for pod in &chart_pods.items {
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.node_name.as_deref().unwrap().starts_with("kwok-node-"));
        let security = spec.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(admin.clone(), NAMESPACE);
    let policy = policies
        .get("demo-resume-showcase-sessions")
        .await
        .unwrap()
        .spec
        .unwrap();
    let selector = policy.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(selector["app.kubernetes.io/component"], "session");
    let roles: Api<Role> = Api::namespaced(admin.clone(), NAMESPACE);
    let rules = roles
        .get("demo-resume-showcase-provisioner")
        .await
        .unwrap()
        .rules
        .unwrap();
    assert!(
        rules
            .iter()
            .all(|r| !r.resources.as_ref().unwrap().contains(&"secrets".to_owned()))
    );
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NAMESPACE);
    assert!(
        bindings
            .get_opt("demo-resume-showcase-provisioner")
            .await
            .unwrap()
            .is_some()
    );
    let services: Api<Service> = Api::namespaced(admin.clone(), NAMESPACE);
    let headless = services
        .get("demo-resume-showcase-server-headless")
        .await
        .unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NAMESPACE);
    let key_of = |secret: Secret, name: &str| secret.data.unwrap()[name].0.clone();
    let key = |secret: Secret| key_of(secret, "signing-key");
    let first_key = key(secrets.get("demo-resume-showcase-signing-key").await.unwrap());
    assert_eq!(first_key.len(), 64);
    let first_route_key = key_of(
        secrets.get("demo-resume-showcase-signing-key").await.unwrap(),
        "route-key",
    );
    assert_eq!(first_route_key.len(), 64);
    assert_ne!(
        first_route_key, first_key,
        "two keys: the edge holds only the route key"
    );

    // An upgrade keeps the key, so live sessions keep working.
    cluster
        .helm(&[
            "upgrade",
            "demo",
            CHART,
            "--namespace",
            NAMESPACE,
            "--reuse-values",
            "--set",
            "maxSessions=5",
        ])
        .await
        .unwrap();
    assert_eq!(
        key(secrets.get("demo-resume-showcase-signing-key").await.unwrap()),
        first_key
    );
    assert_eq!(
        key_of(
            secrets.get("demo-resume-showcase-signing-key").await.unwrap(),
            "route-key"
        ),
        first_route_key
    );

    // The provisioner as the chart runs it (its ServiceAccount, its owner ConfigMap, its key): session Jobs are
    // owned by the release.
    let client = cluster
        .service_account_client(NAMESPACE, "demo-resume-showcase-provisioner")
        .await
        .unwrap();
    let signing_key = String::from_utf8(first_key).unwrap();
    let config = support::config(&[
        "--backend",
        "kubernetes",
        "--namespace",
        NAMESPACE,
        "--edge-url",
        "wss://demo.example.com",
        "--session-owner",
        "demo-resume-showcase-sessions",
        "--session-label",
        "app.kubernetes.io/instance=demo",
        "--warm-pool-size",
        "2",
    ]);
    let mut config = config;
    config.signing_key = Some(common::signing::SecretArg(signing_key));
    config.kubernetes.route_key = Some(common::signing::SecretArg(
        String::from_utf8(first_route_key).unwrap(),
    ));
    let settings = provisioner::kube_settings(&config, NAMESPACE).unwrap();
    let (events, receiver) = mpsc::unbounded_channel();
    let backend = KubernetesBackend::start(client, settings, events).await.unwrap();
    let p = TestProvisioner::serve(config, backend, receiver).await;
    p.until_pool("two warm pods", |s| s.warm == 2).await;
    let _session = p.create_ok().await;
    p.until_pool("refilled", |s| s.warm == 2 && s.assigned == 1).await;
    p.stop().await;
    let jobs: Api<Job> = Api::namespaced(admin.clone(), NAMESPACE);
    let session_jobs = jobs
        .list(&ListParams::default().labels("pool=warm"))
        .await
        .unwrap()
        .items;
    assert_eq!(session_jobs.len(), 3);
    for job in &session_jobs {
        let owners = job.owner_references();
        assert_eq!(owners.len(), 1, "{}", job.name_any());
        assert_eq!(owners[0].name, "demo-resume-showcase-sessions");
    }

    // Uninstalling deletes the owner, and the garbage collector every session Job with it.
    cluster
        .helm(&["uninstall", "demo", "--namespace", NAMESPACE, "--wait"])
        .await
        .unwrap();
    cluster
        .wait_for("every session Job gone", || async {
            Ok(jobs
                .list(&ListParams::default().labels("pool=warm"))
                .await?
                .items
                .is_empty())
        })
        .await
        .unwrap();
    let left = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
        .await
        .unwrap();
    assert!(
        left.items.iter().all(|p| p.metadata.deletion_timestamp.is_some()),
        "only pods on their way out remain"
    );
}
