//! The Kubernetes backend: session pods are one-pod Jobs labelled for the pool ([`manifest`]), and the pool's
//! view of them comes from the cluster, not from memory.
//!
//! - A pod watch (kube-runtime `watcher` + `reflector`, selected by `common::labels::release_pool_selector`:
//!   the pool's labels and the release's own, so two releases in a namespace stay apart) keeps a
//!   local cache of every pool pod and turns changes into [`PodEvent`]s ([`pods::event`]). A restarted
//!   provisioner, or a second replica, sees exactly what exists and adopts it.
//! - A pool entry is named after its Job; its pod carries that name in `batch.kubernetes.io/job-name`.
//! - `claim` relabels the pod `assigned=true, session-id=<id>` with a JSON merge patch that carries the
//!   pod's `resourceVersion`: the API server applies it only if nobody changed the pod since it was read, so
//!   of two replicas claiming one pod exactly one wins and the other gets `409` ([`BackendError::Conflict`])
//!   and moves on.
//! - `terminate` (kill, trim) deletes the pod and its Job through the API. `end` (the session is over) first
//!   labels the pod `ended=true` with the same kind of conditional write, so that every other replica reads the
//!   ending from the cluster and ends the session too, instead of replacing a pod it thinks the session lost.
//! - The browser reaches its pod through the edge servers: `websocket_url` is
//!   `<edge>/ws/session/<id>?token=<route>`, a route to the pod's address signed with the shared key
//!   (`common::signing::RouteClaims`).
//! - API failures are retried with backoff and surface as [`BackendError`]s ([`retry`]).
//!
//! Shutting the provisioner down leaves the pods running: they belong to the cluster, and the next
//! provisioner adopts them.

pub mod manifest;
pub mod pods;
pub mod retry;
#[cfg(test)]
mod tests;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use common::api::ActivityBody;
use common::ids::{PodName, SessionId};
use common::labels;
use common::runtime::unix_time_ms as now_ms;
use common::signing::{RouteClaims, SigningKey};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Backend, BackendError, PodEvent, PodRecord};
use manifest::SessionPodSpec;
use retry::{bounded, classify, retrying, status};

/// Slack between the provisioner ending a session at its maximum age and Kubernetes stopping its Job.
const DEADLINE_MARGIN_SECS: u64 = 60;

/// How the Kubernetes backend makes and exposes session pods.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Namespace of the session Jobs (the provisioner's own).
    pub namespace: String,
    /// The session pod template's settings.
    pub pod: SessionPodSpec,
    /// Public base URL of the edge servers, e.g. `wss://demo.example.com`.
    pub edge_url: String,
    /// How long a signed route stays valid.
    pub route_ttl: Duration,
    /// Key that signs routes (shared with the edge servers).
    pub key: SigningKey,
    /// The most a session lasts: a claimed pod's Job deadline becomes its age plus this.
    pub session_max_age: Duration,
    /// Name of the ConfigMap that owns every session Job (the chart's), if any.
    pub owner: Option<String>,
}

/// Session pods as Jobs in one namespace. Cheap to clone.
#[derive(Clone)]
pub struct KubernetesBackend {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Api<Job>,
    pods: Api<Pod>,
    store: Store<Pod>,
    settings: KubeSettings,
    http: reqwest::Client,
    stop: CancellationToken,
    /// The current pod template's hash (`manifest::template_hash`).
    template: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl KubernetesBackend {
    /// Checks access, starts the pod watch, and returns once the cache holds every existing pool pod.
    pub async fn start(
        client: Client,
        mut settings: KubeSettings,
        events: mpsc::UnboundedSender<PodEvent>,
    ) -> anyhow::Result<Self> {
        if let Some(owner) = &settings.owner {
            let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
            let owner = config_maps
                .get(owner)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the session owner ConfigMap {owner:?}: {e}"))?;
            settings.pod.owner = Some(OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.name_any(),
                uid: owner.uid().unwrap_or_default(),
                ..OwnerReference::default()
            });
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &settings.namespace);
        let selector = labels::release_pool_selector(
            settings
                .pod
                .extra_labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        // Fail fast and clearly (RBAC, namespace, address) instead of retrying a watch forever.
        pods.list_metadata(&ListParams::default().labels(&selector).limit(1))
            .await
            .map_err(|e| anyhow::anyhow!("cannot list pods in namespace {:?}: {e}", settings.namespace))?;
        let (store, writer) = reflector::store();
        let stream = watcher(pods.clone(), watcher::Config::default().labels(&selector))
            .default_backoff()
            .reflect(writer);
        let stop = CancellationToken::new();
        tokio::spawn(forward_events(stream, events.clone(), stop.clone()));
        store
            .wait_until_ready()
            .await
            .map_err(|e| anyhow::anyhow!("the pod watch stopped before its first list: {e}"))?;
        tracing::info!(
            namespace = %settings.namespace,
            pods = store.state().len(),
            "watching session pods"
        );
        Self::from_parts(client, settings, store, stop)
    }

    /// A backend over an existing cache (the unit tests fill one by hand and mock the API server).
    fn from_parts(
        client: Client,
        settings: KubeSettings,
        store: Store<Pod>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                template: manifest::template_hash(&settings.pod),
                jobs: Api::namespaced(client.clone(), &settings.namespace),
                pods: Api::namespaced(client, &settings.namespace),
                store,
                settings,
                http,
                stop,
            }),
        })
    }

    /// The live pod of pool entry `name`, from the watch cache.
    fn pod(&self, name: &PodName) -> Option<Arc<Pod>> {
        self.inner
            .store
            .state()
            .into_iter()
            .find(|pod| pods::pool_name(pod) == Some(name.as_str()) && !pods::is_gone(pod))
    }

    /// Deletes pool entry `name`'s pod; gone already is fine, a failed precondition is a conflict.
    async fn delete_pod(&self, name: &PodName, pod: &Pod, params: DeleteParams) -> Result<(), BackendError> {
        let pod_name = pod.name_any();
        match retrying("delete pod", || self.inner.pods.delete(&pod_name, &params)).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify(name, &e)),
        }
    }

    /// Deletes Job `name` (its pods go with it); gone already is fine.
    async fn delete_job(&self, name: &PodName) -> Result<(), BackendError> {
        let params = DeleteParams::background();
        match retrying("delete job", || self.inner.jobs.delete(name.as_str(), &params)).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify(name, &e)),
        }
    }
}

/// Forwards the watch's meaning to the pool until `stop`. The reflector updates the cache before an event
/// comes out, so the pool can act on an event at once.
async fn forward_events(
    stream: impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>>,
    events: mpsc::UnboundedSender<PodEvent>,
    stop: CancellationToken,
) {
    let mut stream = pin!(stream);
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                if let Some(event) = pods::event(&event)
                    && events.send(event).is_err()
                {
                    return;
                }
            }
            Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying with backoff"),
            None => return,
        }
    }
}

impl Backend for KubernetesBackend {
    async fn create(&self, name: &PodName) -> Result<(), BackendError> {
        let job = manifest::job(name.as_str(), &self.inner.settings.pod);
        let params = PostParams::default();
        let created = retrying("create job", || self.inner.jobs.create(&params, &job)).await;
        match created {
            Ok(_) => {}
            // An earlier attempt landed before its answer was lost.
            Err(e) if status(&e) == Some(409) => {}
            Err(e) => return Err(classify(name, &e)),
        }
        // A pod that does not become ready in time is the pool's to expire (`pool::state`, from `list`).
        Ok(())
    }

    async fn terminate(&self, name: &PodName) -> Result<(), BackendError> {
        // The pod first, so its WebSocket closes now; then the Job, so it does not linger as failed.
        if let Some(pod) = self.pod(name) {
            self.delete_pod(name, &pod, DeleteParams::default()).await?;
        }
        self.delete_job(name).await
    }

    async fn end(&self, name: &PodName) -> Result<(), BackendError> {
        // Conditional on the version read, like a claim: a pod changed meanwhile (its status, say) is read again
        // from the API server, a few times at most.
        let mut pod = self.pod(name).map(|pod| (*pod).clone());
        for _ in 0..3 {
            let Some(current) = pod.take() else { break };
            if pods::is_ended(&current) {
                break;
            }
            let patch = json!({
                "metadata": {
                    "resourceVersion": current.resource_version(),
                    "labels": {labels::ENDED: "true"},
                }
            });
            let pod_name = current.name_any();
            let patched = bounded(self.inner.pods.patch(
                &pod_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ))
            .await;
            match patched {
                Ok(_) => break,
                Err(e) if status(&e) == Some(404) => break,
                Err(e) if status(&e) == Some(409) => {
                    pod = bounded(self.inner.pods.get_opt(&pod_name)).await.ok().flatten();
                }
                Err(e) => {
                    // Deleting without the record still beats keeping the pod: the other replicas then see a
                    // vanished pod, as they did before this record existed.
                    tracing::warn!(pod = %name, error = %e, "cannot record the session's end on its pod");
                    break;
                }
            }
        }
        self.terminate(name).await
    }

    async fn retire(&self, name: &PodName) -> Result<(), BackendError> {
        let Some(pod) = self.pod(name) else {
            return self.delete_job(name).await;
        };
        if !pods::is_claimable(&pod) {
            return Err(BackendError::Conflict(name.to_string()));
        }
        // Deleted only if nobody changed (claimed) the pod since our cache read it: the same precondition as
        // a claim, so a trim and a claim by two replicas cannot both win.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: pod.metadata.resource_version.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        self.delete_pod(name, &pod, params).await?;
        self.delete_job(name).await
    }

    async fn list(&self) -> Result<Vec<PodRecord>, BackendError> {
        let now = now_ms();
        let template = &self.inner.template;
        Ok(self
            .inner
            .store
            .state()
            .iter()
            .filter_map(|pod| pods::record(pod, now, template))
            .collect())
    }

    async fn claim(&self, name: &PodName, session: &SessionId) -> Result<(), BackendError> {
        let pod = self
            .pod(name)
            .ok_or_else(|| BackendError::NotFound(name.to_string()))?;
        if !pods::is_claimable(&pod) {
            return Err(BackendError::Conflict(name.to_string()));
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": pod.resource_version(),
                "labels": {labels::ASSIGNED: "true", labels::SESSION_ID: session},
                "annotations": {labels::SESSION_STARTED_ANNOTATION: now_ms().to_string()},
            }
        });
        // Not retried: after a lost answer the retry would see its own change as a conflict. The pool treats
        // a failure as "not claimed", and the resync reconciles what the labels say.
        bounded(
            self.inner
                .pods
                .patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map_err(|e| classify(name, &e))?;
        // The Job carries the same labels for `kubectl get jobs -l …` (the pod's labels are what count), and
        // its deadline moves from the warm pod's maximum age to the session's.
        let pod_age_secs = pod.metadata.creation_timestamp.as_ref().map_or(0, |t| {
            now_ms().saturating_sub(u64::try_from(t.0.as_millisecond()).unwrap_or(0)) / 1000
        });
        let deadline = pod_age_secs + self.inner.settings.session_max_age.as_secs() + DEADLINE_MARGIN_SECS;
        let job_patch = json!({
            "metadata": {"labels": {labels::ASSIGNED: "true", labels::SESSION_ID: session}},
            "spec": {"activeDeadlineSeconds": deadline},
        });
        // Off the session's critical path: the claim is decided; the browser need not wait for bookkeeping.
        let jobs = self.inner.jobs.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let patched =
                bounded(jobs.patch(name.as_str(), &PatchParams::default(), &Patch::Merge(&job_patch))).await;
            if let Err(e) = patched {
                tracing::warn!(job = %name, error = %e, "cannot relabel the Job (the pod is claimed)");
            }
        });
        Ok(())
    }

    async fn activity(&self, name: &PodName) -> Result<ActivityBody, BackendError> {
        let pod = self
            .pod(name)
            .ok_or_else(|| BackendError::NotFound(name.to_string()))?;
        let address = pods::address(&pod, self.inner.settings.pod.port)
            .ok_or_else(|| BackendError::Unavailable(format!("pod {name} has no IP yet")))?;
        super::fetch_activity(&self.inner.http, name, &address).await
    }

    fn websocket_url(&self, name: &PodName, session: &SessionId) -> Option<String> {
        let settings = &self.inner.settings;
        let pod = self.pod(name)?;
        let claims = RouteClaims {
            sid: session.to_string(),
            pod: name.to_string(),
            addr: pods::address(&pod, settings.pod.port)?,
            exp: now_ms() / 1000 + settings.route_ttl.as_secs(),
        };
        let token = settings.key.sign_route(&claims);
        Some(format!(
            "{}/ws/session/{session}?token={token}",
            settings.edge_url.trim_end_matches('/')
        ))
    }

    async fn shutdown(&self) {
        // The pods stay: the next provisioner (or another replica) adopts them.
        self.inner.stop.cancel();
    }
}
