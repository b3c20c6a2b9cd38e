//! The backend trait: what the pool needs from wherever session pods run.
//!
//! A backend starts and terminates pods by name, lists them with their state, records which session a pod
//! serves (`claim`), reports a pod's WebSocket activity, and tells the pool asynchronously when a pod becomes
//! ready or exits, through the [`PodEvent`] channel it was built with. The pool never assumes more than this, so
//! the same algorithm runs on child processes ([`local`]) and on Kubernetes ([`kubernetes`]).

pub mod kubernetes;
pub mod local;

use std::future::Future;

use common::api::ActivityBody;
use common::ids::{PodName, SessionId};

/// Lifecycle phase of a pod as the backend sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Created, not ready yet.
    Starting,
    /// Answering `/ready`: can serve a session.
    Ready,
}

/// One pod in a [`Backend::list`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// The pod's name (unique in the backend).
    pub name: PodName,
    /// Whether it is ready.
    pub phase: PodPhase,
    /// The session it is claimed for, if any.
    pub session: Option<SessionId>,
    /// How long that session has existed, when the backend records it (so a restarted provisioner that
    /// adopts the session keeps its age).
    pub session_age: Option<std::time::Duration>,
    /// The node it runs on, when known.
    pub node: Option<String>,
    /// Made from an older pod template (before an upgrade): recycled while warm.
    pub outdated: bool,
    /// Its session has ended (a provisioner recorded that on the pod before deleting it): every replica treats
    /// the session as over, never as one that lost its pod.
    pub ended: bool,
    /// How long ago the pod was created, when the backend knows (a pod not ready within the start timeout is
    /// terminated, whoever created it).
    pub age: Option<std::time::Duration>,
}

/// What a backend reports as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// The pod passed its readiness check.
    Ready {
        /// Pod name.
        name: PodName,
        /// Node it runs on, when known.
        node: Option<String>,
    },
    /// The pod is gone (killed, crashed, failed to start, finished).
    Exited {
        /// Pod name.
        name: PodName,
    },
    /// The pod's session ended (another replica recorded it on the pod, then deletes the pod).
    Ended {
        /// Pod name.
        name: PodName,
        /// The session that ended.
        session: SessionId,
    },
}

/// Errors of backend operations.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The pod does not exist (any more).
    #[error("pod {0} not found")]
    NotFound(String),
    /// Someone else changed the pod first (another provisioner claimed it); try another pod.
    #[error("pod {0} was changed concurrently")]
    Conflict(String),
    /// The backend is out of reach or refused; retrying later may work.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
}

/// Where session pods run. Implementations are cheap to share (`Arc` inside).
pub trait Backend: Send + Sync + 'static {
    /// Starts a pod called `name`. Returns once it is created; readiness arrives later as [`PodEvent::Ready`].
    fn create(&self, name: &PodName) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Terminates a pod. Idempotent; its exit arrives as [`PodEvent::Exited`].
    fn terminate(&self, name: &PodName) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Terminates the pod of a session that ended. A backend shared by several provisioners first records the
    /// ending where they all see it (they then end the session too, instead of replacing a pod they think it
    /// lost); with one provisioner this is [`Backend::terminate`].
    fn end(&self, name: &PodName) -> impl Future<Output = Result<(), BackendError>> + Send {
        self.terminate(name)
    }

    /// Terminates a pod only if it is still unclaimed (trimming the warm pool). Fails with
    /// [`BackendError::Conflict`] when someone claimed it meanwhile — another replica may have, with a view
    /// newer than ours — and then leaves it alone.
    fn retire(&self, name: &PodName) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Every pod of this pool that exists now.
    fn list(&self) -> impl Future<Output = Result<Vec<PodRecord>, BackendError>> + Send;

    /// Records that `name` now serves `session`. Fails with [`BackendError::Conflict`] if the pod is no longer
    /// ready and unclaimed, so two claimants can never both win.
    fn claim(
        &self,
        name: &PodName,
        session: &SessionId,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The pod's own report of WebSocket activity.
    fn activity(&self, name: &PodName) -> impl Future<Output = Result<ActivityBody, BackendError>> + Send;

    /// The absolute WebSocket URL a browser uses to reach this pod for `session`.
    fn websocket_url(&self, name: &PodName, session: &SessionId) -> Option<String>;

    /// Terminates every pod and waits until they are gone (provisioner shutdown).
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}

/// Asks the pod at `address` (`host:port`) for its `/activity` report: the one HTTP call both real backends make.
pub async fn fetch_activity(
    http: &reqwest::Client,
    name: &PodName,
    address: &str,
) -> Result<ActivityBody, BackendError> {
    let unavailable = |e: reqwest::Error| BackendError::Unavailable(format!("pod {name}: {e}"));
    http.get(format!("http://{address}/activity"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)
}

#[cfg(test)]
pub mod fake;
