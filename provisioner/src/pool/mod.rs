//! The warm pool: the one algorithm of the provisioner, independent of where pods run.
//!
//! [`Pool`] keeps [`state::State`] behind a mutex that is never held across an `await`, and drives a
//! [`Backend`]. The rules live in `state.rs`; this module carries out their outcomes (backend calls, events,
//! metrics, timers). Work happens in three places, all funnelled through the same two steps — *dispatch* (give
//! warm pods to waiting sessions) and *reconcile* (start or trim pods to meet the target within the caps):
//!
//! - API calls (`create_session`, `kill`, `end`) change the state, dispatch at once (the warm path needs no
//!   extra hop), and wake the loop;
//! - the loop ([`Pool::run`]) reacts to backend events (pod ready, pod exited) and wake-ups;
//! - a periodic resync re-reads the backend's list, ends idle and too-old sessions, and repairs anything an
//!   event missed.
//!
//! The pool knows sessions by id only; who may act on a session (its token) is the API's check, made before
//! the pool is called.
//!
//! Invariants (tested in `tests.rs` against a fake backend): pods never exceed `warm_target + max_sessions`;
//! only ready pods are handed out; no pod serves two sessions; a session that loses its pod gets the next warm
//! one before any new session does.

#[cfg(test)]
pub mod fixtures;
pub mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::api::{
    BoardPod, KillResponse, KillTimings, ProvisionSource, SessionPod, SessionState, SessionStatus,
};
use common::ids::{PodName, SessionId};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError, PodEvent};
use crate::ids;
use crate::metrics::{Metrics, ReasonLabel, SourceLabel};
use common::client::ClientKey;
use state::{AdmitRefused, ClaimOutcome, EndOutcome, KillRefused, Lookup, PodGone, PodUsage, State, Unused};
/// Tuning of the pool algorithm.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Ready, unassigned pods to keep.
    pub warm_target: u32,
    /// Most live sessions.
    pub max_sessions: u32,
    /// Most pods starting at once.
    pub max_starting: u32,
    /// How long a new session waits for a pod when none is warm.
    pub cold_start_timeout: Duration,
    /// Most live sessions of one client.
    pub max_sessions_per_client: u32,
    /// A session whose pod sees no WebSocket this long after its assignment ends.
    pub first_connect_timeout: Duration,
    /// A session whose pod has had no open WebSocket for this long ends.
    pub reconnect_timeout: Duration,
    /// A pod not ready this long after it was created is terminated.
    pub pod_start_timeout: Duration,
    /// Sessions without WebSocket activity for this long end.
    pub idle_timeout: Duration,
    /// Sessions end at this age.
    pub max_age: Duration,
    /// Minimum time between two kills of one session.
    pub kill_cooldown: Duration,
    /// Period of the full resync.
    pub resync_interval: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            warm_target: 2,
            max_sessions: 20,
            max_starting: 4,
            cold_start_timeout: Duration::from_secs(20),
            max_sessions_per_client: 3,
            first_connect_timeout: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(60),
            pod_start_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
            kill_cooldown: Duration::from_secs(5),
            resync_interval: Duration::from_secs(5),
        }
    }
}

impl PoolConfig {
    /// The hard cap on pods that exist at once.
    pub fn pod_cap(&self) -> u32 {
        self.warm_target.saturating_add(self.max_sessions)
    }
}

/// Why a pool operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every session slot is taken.
    #[error("the demo is at capacity ({0} sessions)")]
    AtCapacity(u32),
    /// This client already holds its share of sessions.
    #[error(
        "your address already holds {0} sessions, the most one address may have; close one of your tabs (or wait \
         a minute for an unused one to end) and try again"
    )]
    TooManySessions(u32),
    /// No pod became ready within the cold-start timeout.
    #[error("no pod became ready within {0:?}")]
    ColdStartTimeout(Duration),
    /// No such session.
    #[error("unknown session")]
    UnknownSession,
    /// The session is over.
    #[error("the session has ended")]
    Ended,
    /// Killed too recently.
    #[error("the pod was killed moments ago; wait {0:?}")]
    KillCooldown(Duration),
    /// The session has no pod right now (a replacement is on its way).
    #[error("the session has no pod right now; a replacement is on its way")]
    NoPod,
    /// The provisioner is shutting down.
    #[error("the provisioner is shutting down")]
    ShuttingDown,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A session just created.
#[derive(Debug)]
pub struct Created {
    /// Its id.
    pub session_id: SessionId,
    /// Its pod.
    pub pod: SessionPod,
    /// How the browser reaches the pod.
    pub websocket_url: String,
    /// Warm or cold.
    pub source: ProvisionSource,
}

/// How long a kill's answer waits for a claim of its replacement that another task has under way (one
/// conditional write).
const CLAIM_WAIT: Duration = Duration::from_secs(2);

/// Wakes every waiter of a [`Notify`] when dropped (on every way out of a claim).
struct NotifyOnDrop<'a>(&'a Notify);

impl Drop for NotifyOnDrop<'_> {
    fn drop(&mut self) {
        self.0.notify_waiters();
    }
}

/// The warm pool over backend `B`.
pub struct Pool<B> {
    backend: B,
    config: PoolConfig,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    wake: Notify,
    /// Notified whenever a claim completes or fails (a kill's answer waits for its replacement's).
    claims: Notify,
    closing: CancellationToken,
    counts: watch::Sender<state::Counts>,
    board: watch::Sender<Vec<BoardPod>>,
    /// The last failure to create a pod, until a create succeeds: new sessions then get a quick 503 instead
    /// of waiting for a cold start that cannot come.
    backend_failure: Mutex<Option<(Instant, String)>>,
}

impl<B: Backend> Pool<B> {
    /// A pool with no pods yet; [`Pool::run`] fills it.
    pub fn new(backend: B, config: PoolConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            backend,
            config,
            metrics,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            claims: Notify::new(),
            closing: CancellationToken::new(),
            counts: watch::Sender::new(state::Counts::default()),
            board: watch::Sender::new(Vec::new()),
            backend_failure: Mutex::new(None),
        })
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the bookkeeping half-updated in a way worse than losing
        // it; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reconcile loop: reacts to backend events, wake-ups and the resync tick until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<PodEvent>,
        shutdown: CancellationToken,
    ) {
        // Adopt what exists before creating anything (a restarted provisioner must not double the pool).
        self.resync().await;
        let mut resync = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.resync_interval,
            self.config.resync_interval,
        );
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.reconcile().await;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => {
                        for pod in self.on_event(event) {
                            self.terminate(&pod).await;
                        }
                    }
                    None => break,
                },
                () = self.wake.notified() => {}
                _ = resync.tick() => self.resync().await,
            }
            self.reconcile().await;
        }
        self.closing.cancel();
    }

    /// Applies a backend event; returns pods to terminate.
    fn on_event(&self, event: PodEvent) -> Vec<PodName> {
        let mut state = self.lock();
        match event {
            PodEvent::Ready { name, node } => {
                tracing::debug!(pod = %name, "pod ready");
                state.mark_ready(name.as_str(), node, Instant::now());
                Vec::new()
            }
            PodEvent::Exited { name } => {
                match state.forget_pod(name.as_str()) {
                    PodGone::Orphaned(session) => {
                        tracing::info!(pod = %name, %session, "session pod exited; replacing it");
                    }
                    PodGone::Free | PodGone::Unknown => tracing::debug!(pod = %name, "pod exited"),
                }
                Vec::new()
            }
            PodEvent::Ended { name, session } => {
                match state.ended_elsewhere_event(&name, &session, Instant::now()) {
                    EndOutcome::Ended { pods } => {
                        drop(state);
                        tracing::info!(%session, pod = %name, "session ended by another provisioner");
                        self.count_ended("ended_elsewhere");
                        pods.into_iter().filter(|pod| *pod != name).collect()
                    }
                    EndOutcome::NotLive => Vec::new(),
                }
            }
        }
    }

    fn count_ended(&self, reason: &'static str) {
        self.metrics
            .sessions_ended
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Dispatch, then start or trim pods to meet the target.
    async fn reconcile(&self) {
        self.dispatch().await;
        let (to_create, surplus) = {
            let mut state = self.lock();
            let count = if self.closing.is_cancelled() {
                0
            } else {
                state.pods_to_create(&self.config)
            };
            let names: Vec<PodName> = (0..count).map(|_| ids::pod_name()).collect();
            for name in &names {
                state.add_starting(name.clone());
            }
            (names, state.trim_surplus(&self.config))
        };
        for (i, name) in to_create.iter().enumerate() {
            let created = self.backend.create(name).await;
            *self.backend_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                created.as_ref().err().map(|e| (Instant::now(), e.to_string()));
            if let Err(e) = created {
                tracing::warn!(pod = %name, error = %e, "cannot create pod");
                self.metrics.create_failures.inc();
                // Forget this pod and the ones not attempted yet (they were counted as starting), and do not
                // spin on a failing backend: the next resync tick tries again.
                let mut state = self.lock();
                for name in &to_create[i..] {
                    state.forget_pod(name.as_str());
                }
                break;
            }
        }
        for name in surplus {
            self.retire(&name).await;
        }
        self.publish();
    }

    /// Hands warm pods to waiting sessions, one claim at a time, until either runs out.
    async fn dispatch(&self) {
        loop {
            let Some(m) = self.lock().next_match() else {
                return;
            };
            let claimed = self.backend.claim(&m.pod, &m.session).await;
            // Whatever the outcome, a kill waiting for this session's replacement may look again.
            let _notify = NotifyOnDrop(&self.claims);
            match claimed {
                Ok(()) => {
                    let outcome = self.lock().complete_claim(&m, Instant::now());
                    match outcome {
                        ClaimOutcome::First(_) => {
                            tracing::info!(session = %m.session, pod = %m.pod, "pod assigned");
                        }
                        ClaimOutcome::Replacement(recovery) => {
                            tracing::info!(session = %m.session, pod = %m.pod, "replacement pod assigned");
                            self.metrics.replaced(recovery);
                        }
                        ClaimOutcome::Unwanted => {
                            tracing::info!(session = %m.session, pod = %m.pod, "claimed pod no longer wanted");
                            self.terminate(&m.pod).await;
                        }
                    }
                }
                Err(e) => {
                    let conflict = matches!(e, BackendError::Conflict(_) | BackendError::NotFound(_));
                    tracing::info!(pod = %m.pod, error = %e, "claim failed; trying another pod");
                    self.lock().fail_claim(&m, conflict);
                    if !conflict {
                        return;
                    }
                }
            }
        }
    }

    /// Trims a warm pod unless someone claimed it meanwhile.
    async fn retire(&self, name: &PodName) {
        match self.backend.retire(name).await {
            Ok(()) => {}
            Err(BackendError::Conflict(_)) => {
                // Claimed elsewhere meanwhile: forget it; the next resync reads who has it.
                tracing::debug!(pod = %name, "surplus pod was claimed meanwhile; keeping it");
                self.lock().forget_pod(name.as_str());
            }
            Err(e) => tracing::warn!(pod = %name, error = %e, "cannot trim pod; the resync will retry"),
        }
    }

    async fn terminate(&self, pod: &PodName) {
        if let Err(e) = self.backend.terminate(pod).await {
            tracing::warn!(%pod, error = %e, "cannot terminate pod; the resync will retry");
        }
    }

    /// Re-reads the backend, ends expired and idle sessions.
    async fn resync(&self) {
        match self.backend.list().await {
            Ok(listed) => {
                let outcome = self
                    .lock()
                    .resync(&listed, Instant::now(), self.config.pod_start_timeout);
                for session in &outcome.ended {
                    tracing::info!(%session, "session ended by another provisioner");
                    self.count_ended("ended_elsewhere");
                }
                for session in outcome.orphaned {
                    tracing::info!(%session, "session pod vanished; replacing it");
                }
                for session in outcome.adopted {
                    tracing::info!(%session, "adopted a session from its pod's labels");
                }
                for pod in outcome.terminate {
                    tracing::info!(%pod, "terminating a pod (its session ended or has another pod, or an earlier termination did not take)");
                    self.terminate(&pod).await;
                }
                for pod in outcome.retire {
                    self.retire(&pod).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list pods"),
        }
        let now = Instant::now();
        let expired = self.lock().expired_sessions(self.config.max_age, now);
        for session in expired {
            self.finish(&session, "max_age").await;
        }
        for (session, unused) in self.unused_sessions().await {
            let reason = match unused {
                Unused::Idle => "idle",
                Unused::NeverConnected => "never_connected",
                Unused::Disconnected => "disconnected",
            };
            self.finish(&session, reason).await;
        }
        self.lock().prune_tombstones(Instant::now());
    }

    /// Sessions nobody uses, by the rule [`Unused::verdict`] applies to what each one's pod reports (or, for a
    /// pod that cannot be asked, to the last activity it did report): a session nobody can see being used — its
    /// pod unreachable, or adopted after a crash with no client — ends like an idle one.
    async fn unused_sessions(&self) -> Vec<(SessionId, Unused)> {
        let candidates = self.lock().idle_candidates();
        let checks = candidates.into_iter().map(|candidate| async move {
            let usage = match self.backend.activity(&candidate.pod).await {
                Ok(report) => {
                    let quiet_ms = common::runtime::unix_time_ms().saturating_sub(report.last_activity_ms);
                    let usage = PodUsage {
                        open: report.connections,
                        opened_total: report.opened_total,
                        quiet: Duration::from_millis(quiet_ms),
                    };
                    let quiet = usage.quiet.min(candidate.evidence.elapsed());
                    self.lock()
                        .record_activity(candidate.session.as_str(), Instant::now().checked_sub(quiet));
                    Some(usage)
                }
                Err(_) => None,
            };
            Unused::verdict(&candidate, usage, Instant::now(), &self.config)
                .map(|unused| (candidate.session, unused))
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Ends a session for `reason` and terminates its pod.
    async fn finish(&self, session_id: &SessionId, reason: &'static str) {
        let outcome = self.lock().end_session(session_id.as_str(), Instant::now());
        if let EndOutcome::Ended { pods } = outcome {
            tracing::info!(session = %session_id, reason, "session ended");
            self.count_ended(reason);
            for pod in pods {
                if let Err(e) = self.backend.end(&pod).await {
                    tracing::warn!(%pod, error = %e, "cannot end the session's pod; the resync will retry");
                }
            }
        }
        self.wake.notify_one();
    }

    fn publish(&self) {
        let (counts, sessions, board) = {
            let state = self.lock();
            (state.counts(), state.session_count(), state.board(Instant::now()))
        };
        self.metrics.set_pool(counts, sessions);
        self.counts.send_replace(counts);
        // Only a change of what the board shows wakes its watchers (ages alone do not).
        self.board.send_if_modified(|current| {
            let same = current.len() == board.len()
                && current
                    .iter()
                    .zip(&board)
                    .all(|(a, b)| a.name == b.name && a.state == b.state && a.node == b.node);
            *current = board;
            !same
        });
    }

    /// The pod board as it changes (published with the counts).
    pub fn watch_board(&self) -> watch::Receiver<Vec<BoardPod>> {
        self.board.subscribe()
    }

    /// Pod counts as they change (published after every reconcile).
    pub fn watch_counts(&self) -> watch::Receiver<state::Counts> {
        self.counts.subscribe()
    }

    /// Creates a session for `client` and gives it a pod: a warm one at once, else a cold one within the timeout.
    ///
    /// Not cancel-safe by design: once begun, a claim or a cold start must complete or be rolled back, so the
    /// API runs this in a task of its own and ends the session if its client has gone ([`Pool::end`]).
    pub async fn create_session(&self, client: ClientKey) -> Result<Created, PoolError> {
        if self.closing.is_cancelled() {
            return Err(PoolError::ShuttingDown);
        }
        let started = Instant::now();
        if let Some(failure) = self.failing_backend() {
            return Err(PoolError::Backend(BackendError::Unavailable(failure)));
        }
        let session_id = ids::session_id();
        let (tx, rx) = oneshot::channel();
        self.lock()
            .admit(session_id.clone(), client, started, tx, &self.config)
            .map_err(|refused| match refused {
                AdmitRefused::AtCapacity => PoolError::AtCapacity(self.config.max_sessions),
                AdmitRefused::TooManySessions => {
                    PoolError::TooManySessions(self.config.max_sessions_per_client)
                }
            })?;
        self.dispatch().await;
        // Refill behind us (warm path) or start our pod (cold path).
        self.wake.notify_one();

        let outcome = tokio::time::timeout(self.config.cold_start_timeout, rx).await;
        let view = match self.lock().lookup(session_id.as_str()) {
            Lookup::Live(view) => view,
            Lookup::Ended { .. } | Lookup::Unknown => return Err(PoolError::ShuttingDown),
        };
        let (Some((pod_name, node)), Some(source)) = (view.pod, view.source) else {
            return Err(match outcome {
                Err(_elapsed) => {
                    // Give the slot back; a pod started for us joins the warm pool.
                    self.lock().abandon(session_id.as_str());
                    PoolError::ColdStartTimeout(self.config.cold_start_timeout)
                }
                Ok(_) => PoolError::ShuttingDown,
            });
        };
        let websocket_url = self
            .backend
            .websocket_url(&pod_name, &session_id)
            .ok_or_else(|| PoolError::Backend(BackendError::NotFound(pod_name.to_string())))?;
        let label = source.as_str();
        self.metrics
            .sessions_created
            .get_or_create(&SourceLabel { source: label })
            .inc();
        self.metrics
            .assignment_seconds
            .observe(started.elapsed().as_secs_f64());
        self.publish();
        tracing::info!(session = %session_id, pod = %pod_name, source = label, "session created");
        Ok(Created {
            session_id,
            pod: session_pod(&pod_name, node),
            websocket_url,
            source,
        })
    }

    /// The backend's last create failure, if it is recent and no warm pod could serve a session anyway.
    fn failing_backend(&self) -> Option<String> {
        let failure = self
            .backend_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (at, message) = failure?;
        let recent = at.elapsed() < self.config.resync_interval * 2;
        (recent && self.lock().counts().warm == 0).then_some(message)
    }

    /// The state of session `id`, for its owner.
    pub fn session(&self, id: &SessionId) -> Result<SessionStatus, PoolError> {
        let lookup = self.lock().lookup(id.as_str());
        match lookup {
            Lookup::Unknown => Err(PoolError::UnknownSession),
            Lookup::Ended { replacements } => Ok(SessionStatus {
                session_id: id.clone(),
                state: SessionState::Ended,
                pod: None,
                websocket_url: None,
                replacements,
                last_kill: None,
            }),
            Lookup::Live(view) => Ok(SessionStatus {
                session_id: id.clone(),
                state: view.state,
                websocket_url: view
                    .pod
                    .as_ref()
                    .and_then(|(name, _)| self.backend.websocket_url(name, id)),
                pod: view.pod.map(|(name, node)| session_pod(&name, node)),
                replacements: view.replacements,
                last_kill: view.last_kill,
            }),
        }
    }

    /// Kills session `id`'s pod; the session then gets a replacement, from the warm pool at once when a pod is
    /// warm. The answer names the killed pod, the replacement if it is already assigned, and the steps as
    /// durations since the kill was accepted.
    pub async fn kill(&self, id: &SessionId) -> Result<KillResponse, PoolError> {
        let accepted = Instant::now();
        let killed = self.lock().kill(id.as_str(), accepted, self.config.kill_cooldown);
        let pod = killed.map_err(|refused| match refused {
            KillRefused::Unknown => PoolError::UnknownSession,
            KillRefused::Ended => PoolError::Ended,
            KillRefused::Cooldown(wait) => PoolError::KillCooldown(wait),
            KillRefused::NoPod => PoolError::NoPod,
        })?;
        self.metrics.kills.inc();
        tracing::info!(session = %id, %pod, "killing session pod on request");
        self.terminate(&pod).await;
        self.dispatch().await;
        self.wake.notify_one();
        self.publish();
        self.until_claimed(id).await;
        let status = self.session(id)?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Ok(KillResponse {
            killed: pod,
            replacement: status.pod,
            websocket_url: status.websocket_url,
            timings: KillTimings {
                replacement_assigned_ms: status.last_kill.and_then(|k| k.replacement_assigned_ms),
                answered_ms: Some(ms(accepted.elapsed())),
            },
        })
    }

    /// Waits (at most [`CLAIM_WAIT`]) while another task is claiming a pod for session `id`: the pod watch can
    /// wake the dispatcher before the kill's own call to it, and the kill's answer should still name the
    /// replacement, so that the page reconnects without waiting for the board.
    async fn until_claimed(&self, id: &SessionId) {
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            let notified = self.claims.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.lock().claiming_for(id.as_str()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Ends session `id` for `reason` and terminates its pod. Ending an ended session is fine; an unknown one
    /// is not.
    pub async fn end(&self, id: &SessionId, reason: &'static str) -> Result<(), PoolError> {
        let lookup = self.lock().lookup(id.as_str());
        match lookup {
            Lookup::Unknown => Err(PoolError::UnknownSession),
            Lookup::Ended { .. } => Ok(()),
            Lookup::Live(_) => {
                self.finish(id, reason).await;
                Ok(())
            }
        }
    }

    /// Pod counts for `GET /pool`.
    pub fn status(&self) -> common::api::PoolStatus {
        let state = self.lock();
        let counts = state.counts();
        common::api::PoolStatus {
            target: self.config.warm_target,
            warm: counts.warm,
            starting: counts.starting,
            assigned: counts.assigned,
            max_sessions: self.config.max_sessions,
        }
    }

    /// Pod counts including terminating pods (tests and metrics).
    pub fn counts(&self) -> state::Counts {
        self.lock().counts()
    }

    /// Stops handing out pods and terminates every pod.
    pub async fn shutdown(&self) {
        self.closing.cancel();
        let live = self.lock().live_sessions();
        for id in live {
            self.lock().end_session(id.as_str(), Instant::now());
            self.count_ended("shutdown");
        }
        self.backend.shutdown().await;
    }
}

fn session_pod(name: &PodName, node: Option<String>) -> SessionPod {
    SessionPod {
        name: name.clone(),
        display_name: common::names::display_name(name.as_str()),
        node,
    }
}
