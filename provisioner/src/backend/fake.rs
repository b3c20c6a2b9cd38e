//! An in-memory backend for the pool's unit tests: a test double for the algorithm, not a substitute for the
//! real backends' own tests. Pods become ready when the test says so (or at once with `auto_ready`), and the
//! fake records the most pods that ever existed at once, to check the pool's cap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::api::ActivityBody;
use common::ids::{PodName, SessionId};
use tokio::sync::mpsc;

use super::{Backend, BackendError, PodEvent, PodPhase, PodRecord};

#[derive(Debug, Clone)]
struct FakePod {
    phase: PodPhase,
    session: Option<SessionId>,
}

/// The fake backend; clones share state.
#[derive(Clone)]
pub struct FakeBackend {
    pods: Arc<Mutex<HashMap<PodName, FakePod>>>,
    events: mpsc::UnboundedSender<PodEvent>,
    /// Pods become ready as soon as they are created.
    pub auto_ready: Arc<AtomicBool>,
    /// `create` fails.
    pub fail_create: Arc<AtomicBool>,
    /// Most pods that existed at once.
    pub max_pods: Arc<AtomicU32>,
    /// What every pod reports as its last activity (Unix ms); 0 means "now".
    pub last_activity_ms: Arc<AtomicU64>,
    /// `activity` fails (the pods cannot be reached).
    pub fail_activity: Arc<AtomicBool>,
    /// What every pod reports as its open WebSockets (and as the ones it ever had).
    pub open_connections: Arc<AtomicU32>,
}

impl FakeBackend {
    /// A fake sending its events to `events`.
    pub fn new(events: mpsc::UnboundedSender<PodEvent>) -> Self {
        Self {
            pods: Arc::default(),
            events,
            auto_ready: Arc::new(AtomicBool::new(true)),
            fail_create: Arc::default(),
            max_pods: Arc::default(),
            last_activity_ms: Arc::default(),
            fail_activity: Arc::default(),
            open_connections: Arc::new(AtomicU32::new(1)),
        }
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<PodName, FakePod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a starting pod ready.
    pub fn make_ready(&self, name: &str) {
        if let Some(pod) = self.pods().get_mut(name) {
            pod.phase = PodPhase::Ready;
        }
        let _ = self.events.send(PodEvent::Ready {
            name: name.into(),
            node: Some("fake-node".into()),
        });
    }

    /// Makes a pod die on its own.
    pub fn crash(&self, name: &str) {
        self.pods().remove(name);
        let _ = self.events.send(PodEvent::Exited { name: name.into() });
    }

    /// Another provisioner claims the pod behind our back.
    pub fn steal(&self, name: &str) {
        if let Some(pod) = self.pods().get_mut(name) {
            pod.session = Some("someone-else".into());
        }
    }

    /// Names of pods in a phase.
    pub fn names(&self, phase: PodPhase) -> Vec<PodName> {
        let mut names: Vec<PodName> = self
            .pods()
            .iter()
            .filter(|(_, p)| p.phase == phase)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Whether a pod exists.
    pub fn exists(&self, name: &str) -> bool {
        self.pods().contains_key(name)
    }
}

impl Backend for FakeBackend {
    async fn create(&self, name: &PodName) -> Result<(), BackendError> {
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("injected failure".into()));
        }
        let count = {
            let mut pods = self.pods();
            pods.insert(
                name.clone(),
                FakePod {
                    phase: PodPhase::Starting,
                    session: None,
                },
            );
            u32::try_from(pods.len()).unwrap_or(u32::MAX)
        };
        self.max_pods.fetch_max(count, Ordering::SeqCst);
        if self.auto_ready.load(Ordering::SeqCst) {
            self.make_ready(name.as_str());
        }
        Ok(())
    }

    async fn terminate(&self, name: &PodName) -> Result<(), BackendError> {
        if self.pods().remove(name).is_some() {
            let _ = self.events.send(PodEvent::Exited { name: name.clone() });
        }
        Ok(())
    }

    async fn retire(&self, name: &PodName) -> Result<(), BackendError> {
        if self.pods().get(name).is_some_and(|p| p.session.is_some()) {
            return Err(BackendError::Conflict(name.to_string()));
        }
        self.terminate(name).await
    }

    async fn list(&self) -> Result<Vec<PodRecord>, BackendError> {
        Ok(self
            .pods()
            .iter()
            .map(|(name, pod)| PodRecord {
                name: name.clone(),
                phase: pod.phase,
                session: pod.session.clone(),
                session_age: None,
                node: None,
                outdated: false,
                ended: false,
                age: None,
            })
            .collect())
    }

    async fn claim(&self, name: &PodName, session: &SessionId) -> Result<(), BackendError> {
        match self.pods().get_mut(name) {
            Some(pod) if pod.phase == PodPhase::Ready && pod.session.is_none() => {
                pod.session = Some(session.clone());
                Ok(())
            }
            Some(_) => Err(BackendError::Conflict(name.to_string())),
            None => Err(BackendError::NotFound(name.to_string())),
        }
    }

    async fn activity(&self, name: &PodName) -> Result<ActivityBody, BackendError> {
        if !self.exists(name.as_str()) {
            return Err(BackendError::NotFound(name.to_string()));
        }
        if self.fail_activity.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable(format!("pod {name} unreachable")));
        }
        let configured = self.last_activity_ms.load(Ordering::SeqCst);
        let now = common::runtime::unix_time_ms();
        Ok(ActivityBody {
            connections: self.open_connections.load(Ordering::SeqCst),
            opened_total: u64::from(self.open_connections.load(Ordering::SeqCst)),
            last_activity_ms: if configured == 0 { now } else { configured },
        })
    }

    fn websocket_url(&self, name: &PodName, _session: &SessionId) -> Option<String> {
        Some(format!("ws://fake/{name}/ws"))
    }

    async fn shutdown(&self) {
        let names: Vec<PodName> = self.pods().keys().cloned().collect();
        for name in names {
            let _ = self.terminate(&name).await;
        }
    }
}
