//! The session Job, built in code from [`SessionPodSpec`]: one pod of the `server` image, labelled for the pool
//! (label keys from `common::labels`), never retried (`backoffLimit: 0`), ended at the session's maximum age
//! (`activeDeadlineSeconds`), garbage-collected after it finishes (`ttlSecondsAfterFinished`), ready when
//! `/ready` answers, named by the downward API, locked down to the restricted Pod Security profile, and placed
//! where the operator's [`SessionPodTemplate`] says.

use std::collections::BTreeMap;

use common::labels;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    LocalObjectReference, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

/// Everything configurable about a session pod. Defaults match the original deployment's sizing.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPodSpec {
    /// The ping-server image.
    pub image: String,
    /// Its pull policy (`Always`, `IfNotPresent`, `Never`); the cluster's default when `None`.
    pub image_pull_policy: Option<String>,
    /// Secrets for pulling it from a private registry.
    pub image_pull_secrets: Vec<String>,
    /// Port the server listens on inside the pod.
    pub port: u16,
    /// CPU request, e.g. `10m`.
    pub cpu_request: String,
    /// Memory request, e.g. `30Mi`.
    pub memory_request: String,
    /// CPU limit, e.g. `100m`.
    pub cpu_limit: String,
    /// Memory limit, e.g. `256Mi`.
    pub memory_limit: String,
    /// The Job is stopped by Kubernetes after this many seconds (the session's maximum age).
    pub active_deadline_seconds: i64,
    /// A finished Job is deleted after this many seconds.
    pub ttl_seconds_after_finished: i32,
    /// Browser origins the pod accepts WebSockets from (passed as `ALLOWED_ORIGINS`).
    pub allowed_origins: Vec<String>,
    /// Labels of the owning release (e.g. `app.kubernetes.io/instance`), added to every object.
    pub extra_labels: BTreeMap<String, String>,
    /// The object every session Job is owned by (the chart's ConfigMap): deleting it deletes the Jobs.
    pub owner: Option<OwnerReference>,
    /// Where session pods run, and the operator's own labels and annotations on them.
    pub template: SessionPodTemplate,
}

/// What an operator sets on every session pod (`--session-pod-template`, JSON with these Kubernetes field
/// names): scheduling, and extra labels and annotations. The pool's own labels always win over `labels`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionPodTemplate {
    /// Pod spec `nodeSelector`.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Pod spec `affinity`.
    #[serde(default)]
    pub affinity: Option<Affinity>,
    /// Pod spec `tolerations`.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Pod spec `topologySpreadConstraints`.
    #[serde(default)]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Pod spec `priorityClassName`.
    #[serde(default)]
    pub priority_class_name: Option<String>,
    /// Extra pod annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Extra pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl SessionPodTemplate {
    /// Parses the flag's JSON; an empty value is the empty template.
    pub fn parse(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_json::from_str(json).map_err(|e| format!("not a session pod template: {e}"))
    }
}

impl Default for SessionPodSpec {
    fn default() -> Self {
        Self {
            image: "ghcr.io/resume-showcase/resume-showcase/server:latest".into(),
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
            port: 8080,
            cpu_request: "10m".into(),
            memory_request: "30Mi".into(),
            cpu_limit: "100m".into(),
            memory_limit: "256Mi".into(),
            active_deadline_seconds: 3600,
            ttl_seconds_after_finished: 60,
            allowed_origins: Vec::new(),
            extra_labels: BTreeMap::new(),
            owner: None,
            template: SessionPodTemplate::default(),
        }
    }
}

/// Fingerprint of the pod template `spec` makes (16 hex digits), carried in the [`labels::TEMPLATE`] label.
pub fn template_hash(spec: &SessionPodSpec) -> String {
    let pod_spec = job_without_fingerprint(spec, BTreeMap::new())
        .spec
        .map(|s| s.template.spec);
    let json = serde_json::to_vec(&pod_spec).unwrap_or_default();
    format!("{:016x}", common::names::fnv1a(&json))
}

/// The labels of a new, unassigned session pod and its Job.
pub fn pool_labels(spec: &SessionPodSpec) -> BTreeMap<String, String> {
    let mut labels = base_labels(spec);
    labels.insert(labels::TEMPLATE.to_owned(), template_hash(spec));
    labels
}

fn base_labels(spec: &SessionPodSpec) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = spec.extra_labels.clone();
    for (key, value) in [
        (labels::APP_NAME, labels::APP),
        (labels::COMPONENT, labels::COMPONENT_SESSION),
        (labels::MANAGED_BY, labels::MANAGED_BY_PROVISIONER),
        (labels::POOL, labels::POOL_WARM),
        (labels::ASSIGNED, "false"),
    ] {
        labels.insert(key.to_owned(), value.to_owned());
    }
    labels
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The Job for the session pod `name` (the pod gets the same name prefix from the Job controller).
pub fn job(name: &str, spec: &SessionPodSpec) -> Job {
    let mut job = job_without_fingerprint(spec, pool_labels(spec));
    job.metadata.name = Some(name.to_owned());
    job
}

fn job_without_fingerprint(spec: &SessionPodSpec, labels: BTreeMap<String, String>) -> Job {
    let labels = if labels.is_empty() {
        base_labels(spec)
    } else {
        labels
    };
    let t = &spec.template;
    let mut pod_labels = t.labels.clone();
    pod_labels.extend(labels.clone());
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    let container = Container {
        name: "server".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: Some(vec!["--port".into(), spec.port.to_string()]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(spec.port),
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            // The pool's name for the pod (its Job's), so the page, the API and the pod's hello agree.
            field_env("POD_NAME", &format!("metadata.labels['{}']", labels::JOB_NAME)),
            field_env("NODE_NAME", "spec.nodeName"),
            env("ALLOWED_ORIGINS", &spec.allowed_origins.join(",")),
            env("NO_LOCALHOST_ORIGINS", "true"),
            env("LOG_FORMAT", "json"),
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/ready".into()),
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(2),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&spec.cpu_request, &spec.memory_request)),
            limits: Some(quantities(&spec.cpu_limit, &spec.memory_limit)),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Job {
        metadata: ObjectMeta {
            labels: Some(labels.clone()),
            owner_references: spec.owner.clone().map(|owner| vec![owner]),
            // Made at run time, not by GitOps: ArgoCD neither reports nor prunes them.
            annotations: Some(BTreeMap::from([
                (
                    "argocd.argoproj.io/compare-options".to_owned(),
                    "IgnoreExtraneous".to_owned(),
                ),
                (
                    "argocd.argoproj.io/sync-options".to_owned(),
                    "Prune=false".to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(spec.active_deadline_seconds),
            ttl_seconds_after_finished: Some(spec.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!t.annotations.is_empty()).then(|| t.annotations.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: (!t.node_selector.is_empty()).then(|| t.node_selector.clone()),
                    affinity: t.affinity.clone(),
                    tolerations: (!t.tolerations.is_empty()).then(|| t.tolerations.clone()),
                    topology_spread_constraints: (!t.topology_spread_constraints.is_empty())
                        .then(|| t.topology_spread_constraints.clone()),
                    priority_class_name: t.priority_class_name.clone(),
                    restart_policy: Some("Never".into()),
                    image_pull_secrets: (!spec.image_pull_secrets.is_empty()).then(|| {
                        spec.image_pull_secrets
                            .iter()
                            .map(|name| LocalObjectReference { name: name.clone() })
                            .collect()
                    }),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(5),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_has_the_pool_labels_lifecycle_and_probe() {
        let spec = SessionPodSpec {
            image: "registry.example/server:1.2.3".into(),
            allowed_origins: vec!["https://me.github.io".into()],
            extra_labels: BTreeMap::from([("app.kubernetes.io/instance".into(), "demo".into())]),
            ..SessionPodSpec::default()
        };
        let job = serde_json::to_value(job("session-abc", &spec)).unwrap();
        let labels = json!({
            "app.kubernetes.io/name": "resume-showcase",
            "app.kubernetes.io/component": "session",
            "app.kubernetes.io/managed-by": "resume-showcase-provisioner",
            "app.kubernetes.io/instance": "demo",
            "pool": "warm",
            "assigned": "false",
            "resume-showcase.dev/template": template_hash(&spec),
        });
        assert_eq!(job["metadata"]["name"], "session-abc");
        assert!(job["metadata"].get("ownerReferences").is_none());
        assert_eq!(
            job["metadata"]["annotations"]["argocd.argoproj.io/sync-options"],
            "Prune=false"
        );
        assert_eq!(job["metadata"]["labels"], labels);
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 3600);
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 60);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "registry.example/server:1.2.3");
        assert_eq!(
            container["readinessProbe"]["httpGet"],
            json!({"path": "/ready", "port": "http"})
        );
        assert_eq!(
            container["env"][0],
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {
                "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"
            }}})
        );
        assert_eq!(
            container["env"][1],
            json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
        );
        assert_eq!(
            container["env"][2],
            json!({"name": "ALLOWED_ORIGINS", "value": "https://me.github.io"})
        );
    }

    #[test]
    fn private_images_get_their_pull_policy_and_secrets() {
        let spec = SessionPodSpec {
            image_pull_policy: Some("Always".into()),
            image_pull_secrets: vec!["ghcr".into()],
            ..SessionPodSpec::default()
        };
        let job = serde_json::to_value(job("s", &spec)).unwrap();
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "ghcr"}]));
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        let plain = serde_json::to_value(job_of_default()).unwrap();
        assert!(
            plain["spec"]["template"]["spec"]
                .get("imagePullSecrets")
                .is_none()
        );
    }

    fn job_of_default() -> Job {
        job("s", &SessionPodSpec::default())
    }

    #[test]
    fn resources_come_from_the_spec() {
        let defaults = serde_json::to_value(job("s", &SessionPodSpec::default())).unwrap();
        let resources = &defaults["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(
            *resources,
            json!({"requests": {"cpu": "10m", "memory": "30Mi"}, "limits": {"cpu": "100m", "memory": "256Mi"}})
        );
        let custom = SessionPodSpec {
            cpu_limit: "250m".into(),
            memory_request: "64Mi".into(),
            ..SessionPodSpec::default()
        };
        let custom = serde_json::to_value(job("s", &custom)).unwrap();
        let resources = &custom["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(resources["limits"]["cpu"], "250m");
        assert_eq!(resources["requests"]["memory"], "64Mi");
    }

    #[test]
    fn security_context_is_restricted() {
        let job = serde_json::to_value(job("s", &SessionPodSpec::default())).unwrap();
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let container = &pod["containers"][0]["securityContext"];
        assert_eq!(container["allowPrivilegeEscalation"], false);
        assert_eq!(container["readOnlyRootFilesystem"], true);
        assert_eq!(container["capabilities"]["drop"], json!(["ALL"]));
    }

    #[test]
    fn jobs_are_owned_by_the_release_when_told() {
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "demo-resume-showcase-sessions".into(),
            uid: "u-1".into(),
            ..OwnerReference::default()
        };
        let spec = SessionPodSpec {
            owner: Some(owner),
            ..SessionPodSpec::default()
        };
        let job = serde_json::to_value(job("session-abc", &spec)).unwrap();
        assert_eq!(
            job["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "demo-resume-showcase-sessions", "uid": "u-1"}])
        );
    }

    #[test]
    fn the_operators_template_places_and_labels_pods_but_never_overrides_the_pools_labels() {
        let template = SessionPodTemplate::parse(
            r#"{"nodeSelector": {"pool": "sessions"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "sessions", "effect": "NoSchedule"}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "ScheduleAnyway"}],
                "affinity": {"nodeAffinity": {}},
                "priorityClassName": "low",
                "annotations": {"example.com/team": "demo"},
                "labels": {"team": "demo", "app.kubernetes.io/component": "mine"}}"#,
        )
        .unwrap();
        let spec = SessionPodSpec {
            template,
            ..SessionPodSpec::default()
        };
        let job = serde_json::to_value(job("session-abc", &spec)).unwrap();
        let pod = &job["spec"]["template"];
        assert_eq!(pod["spec"]["nodeSelector"], json!({"pool": "sessions"}));
        assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
        assert_eq!(pod["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
        assert_eq!(pod["spec"]["priorityClassName"], "low");
        assert!(pod["spec"]["affinity"]["nodeAffinity"].is_object());
        assert_eq!(
            pod["metadata"]["annotations"],
            json!({"example.com/team": "demo"})
        );
        assert_eq!(pod["metadata"]["labels"]["team"], "demo");
        assert_eq!(
            pod["metadata"]["labels"]["app.kubernetes.io/component"],
            "session"
        );
        assert!(
            job["metadata"]["labels"].get("team").is_none(),
            "the Job keeps the pool's labels only"
        );
        assert_ne!(
            template_hash(&spec),
            template_hash(&SessionPodSpec::default()),
            "moving pods elsewhere rolls the warm pool"
        );

        assert_eq!(
            SessionPodTemplate::parse("").unwrap(),
            SessionPodTemplate::default()
        );
        assert_eq!(
            SessionPodTemplate::parse("{}").unwrap(),
            SessionPodTemplate::default()
        );
        let typo = SessionPodTemplate::parse(r#"{"nodeSelecter": {}}"#).unwrap_err();
        assert!(typo.contains("nodeSelecter"), "{typo}");
    }

    #[test]
    fn the_template_hash_follows_what_the_pod_runs() {
        let spec = SessionPodSpec::default();
        let hash = template_hash(&spec);
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, template_hash(&spec.clone()), "stable");
        let newer = SessionPodSpec {
            image: "registry.example/server:2".into(),
            ..spec.clone()
        };
        let bigger = SessionPodSpec {
            memory_limit: "512Mi".into(),
            ..spec.clone()
        };
        let relabelled = SessionPodSpec {
            extra_labels: BTreeMap::from([("team".into(), "demo".into())]),
            ..spec.clone()
        };
        assert_ne!(template_hash(&newer), hash);
        assert_ne!(template_hash(&bigger), hash);
        assert_eq!(
            template_hash(&relabelled),
            hash,
            "labels are not what the pod runs"
        );
    }
}
