//! The warm pool: the one algorithm of the provisioner, independent of where pods run.
//!
//! [`Pool`] keeps [`state::State`] behind a mutex that is never held across an `await`, and drives a
//! [`Backend`]. Work happens in three places, all funnelled through the same two steps — *dispatch* (give warm
//! pods to waiting sessions) and *reconcile* (start or trim pods to meet the target within the caps):
//!
//! - API calls (`create_session`, `kill`, `end`) change the state, dispatch at once (the warm path needs no
//!   extra hop), and wake the loop;
//! - the loop ([`Pool::run`]) reacts to backend events (pod ready, pod exited) and wake-ups;
//! - a periodic resync re-reads the backend's list, ends idle and too-old sessions, and repairs anything an
//!   event missed.
//!
//! Invariants (tested in `tests.rs` against a fake backend): pods never exceed `warm_target + max_sessions`;
//! only ready pods are handed out; no pod serves two sessions; a session that loses its pod gets the next warm
//! one before any new session does.

pub mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::api::{ProvisionSource, SessionPod, SessionState, SessionStatus};
use common::signing::SigningKey;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError, PodEvent};
use crate::ids::{self, Token};
use crate::metrics::{Metrics, ReasonLabel, SourceLabel};
use state::{Session, State};

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
    /// No pod became ready within the cold-start timeout.
    #[error("no pod became ready within {0:?}")]
    ColdStartTimeout(Duration),
    /// No such session, or the token does not match (the API tells these apart before calling).
    #[error("unknown session")]
    UnknownSession,
    /// The token does not belong to this session.
    #[error("invalid token")]
    Unauthorized,
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
    pub session_id: String,
    /// Its token.
    pub token: Token,
    /// Its pod.
    pub pod: SessionPod,
    /// How the browser reaches the pod.
    pub websocket_url: String,
    /// Warm or cold.
    pub source: ProvisionSource,
}

/// The warm pool over backend `B`.
pub struct Pool<B> {
    backend: B,
    config: PoolConfig,
    key: SigningKey,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    wake: Notify,
    closing: CancellationToken,
    counts: watch::Sender<state::Counts>,
    /// The last failure to create a pod, until a create succeeds: new sessions then get a quick 503 instead
    /// of waiting for a cold start that cannot come.
    backend_failure: Mutex<Option<(Instant, String)>>,
}

impl<B: Backend> Pool<B> {
    /// A pool with no pods yet; [`Pool::run`] fills it. Session tokens are derived with `key`.
    pub fn new(backend: B, config: PoolConfig, key: SigningKey, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            backend,
            config,
            key,
            metrics,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            closing: CancellationToken::new(),
            counts: watch::Sender::new(state::Counts::default()),
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
                    Some(event) => self.on_event(event),
                    None => break,
                },
                () = self.wake.notified() => {}
                _ = resync.tick() => self.resync().await,
            }
            self.reconcile().await;
        }
        self.closing.cancel();
    }

    fn on_event(&self, event: PodEvent) {
        let mut state = self.lock();
        match event {
            PodEvent::Ready { name, node } => {
                tracing::debug!(pod = %name, "pod ready");
                state.mark_ready(&name, node, Instant::now());
            }
            PodEvent::Exited { name } => {
                if let Some(session) = state.remove_pod(&name) {
                    tracing::info!(pod = %name, %session, "session pod exited; replacing it");
                } else {
                    tracing::debug!(pod = %name, "pod exited");
                }
            }
        }
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
            let names: Vec<String> = (0..count).map(|_| ids::pod_name()).collect();
            for name in &names {
                state.add_starting(name.clone());
            }
            let surplus = state.surplus_warm(&self.config);
            for name in &surplus {
                state.start_retiring(name);
            }
            (names, surplus)
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
                    state.pods.remove(name);
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
            let Some((session_id, pod_name)) = self.lock().next_match() else {
                return;
            };
            match self.backend.claim(&pod_name, &session_id).await {
                Ok(()) => {
                    let now = Instant::now();
                    let (kept, replacement) = {
                        let mut state = self.lock();
                        let before = state.sessions.get(&session_id).map(|s| s.replacements);
                        let kept = state.complete_claim(&session_id, &pod_name, now);
                        let after = state.sessions.get(&session_id).map(|s| s.replacements);
                        if !kept {
                            state.start_terminating(&pod_name);
                        }
                        (kept, after > before)
                    };
                    if kept {
                        tracing::info!(session = %session_id, pod = %pod_name, replacement, "pod assigned");
                        if replacement {
                            self.metrics.replacements.inc();
                        }
                    } else {
                        // The session ended while the claim was in flight.
                        self.terminate(&pod_name).await;
                    }
                }
                Err(e) => {
                    let conflict = matches!(e, BackendError::Conflict(_) | BackendError::NotFound(_));
                    tracing::info!(pod = %pod_name, error = %e, "claim failed; trying another pod");
                    self.lock().fail_claim(&session_id, &pod_name, conflict);
                    if !conflict {
                        return;
                    }
                }
            }
        }
    }

    /// Trims a warm pod unless someone claimed it meanwhile.
    async fn retire(&self, name: &str) {
        match self.backend.retire(name).await {
            Ok(()) => {}
            Err(BackendError::Conflict(_)) => {
                // Claimed elsewhere meanwhile: forget it; the next resync reads who has it.
                tracing::debug!(pod = %name, "surplus pod was claimed meanwhile; keeping it");
                self.lock().pods.remove(name);
            }
            Err(e) => tracing::warn!(pod = %name, error = %e, "cannot trim pod; the resync will retry"),
        }
    }

    async fn terminate(&self, pod: &str) {
        if let Err(e) = self.backend.terminate(pod).await {
            tracing::warn!(%pod, error = %e, "cannot terminate pod; the resync will retry");
        }
    }

    /// Re-reads the backend, ends expired and idle sessions.
    async fn resync(&self) {
        match self.backend.list().await {
            Ok(listed) => {
                let outcome = self.lock().resync(&listed, Instant::now());
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
        for session in self.idle_sessions().await {
            self.finish(&session, "idle").await;
        }
        self.lock().prune_tombstones(Instant::now());
    }

    /// Sessions whose pod reports no WebSocket activity for the idle timeout. A pod that cannot be asked
    /// counts as quiet since the last activity it did report (or its assignment): a session nobody can see
    /// being used — its pod unreachable, or adopted after a crash with no client — ends like an idle one.
    async fn idle_sessions(&self) -> Vec<String> {
        let assigned: Vec<(String, String, Instant)> = self
            .lock()
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                let assigned_at = s.assigned_at?;
                let evidence = s.active_at.map_or(assigned_at, |active| active.max(assigned_at));
                Some((id.clone(), s.pod.clone()?, evidence))
            })
            .collect();
        let checks = assigned.into_iter().map(|(session, pod, evidence)| async move {
            let quiet = match self.backend.activity(&pod).await {
                Ok(report) => {
                    let quiet_ms = common_now_ms().saturating_sub(report.last_activity_ms);
                    let quiet = Duration::from_millis(quiet_ms).min(evidence.elapsed());
                    if let Some(s) = self.lock().sessions.get_mut(&session) {
                        s.active_at = Instant::now().checked_sub(quiet);
                    }
                    quiet
                }
                Err(_) => evidence.elapsed(),
            };
            (quiet >= self.config.idle_timeout).then_some(session)
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Ends a session for `reason` and terminates its pod.
    async fn finish(&self, session_id: &str, reason: &'static str) {
        let pod = self.lock().end_session(session_id, Instant::now());
        if let Some(pod) = pod {
            tracing::info!(session = %session_id, reason, "session ended");
            self.metrics
                .sessions_ended
                .get_or_create(&ReasonLabel { reason })
                .inc();
            if let Some(pod) = pod {
                self.terminate(&pod).await;
            }
        }
        self.wake.notify_one();
    }

    fn publish(&self) {
        let (counts, sessions) = {
            let state = self.lock();
            (state.counts(), state.sessions.len())
        };
        self.metrics.set_pool(counts, sessions);
        self.counts.send_replace(counts);
    }

    /// Pod counts as they change (published after every reconcile).
    pub fn watch_counts(&self) -> watch::Receiver<state::Counts> {
        self.counts.subscribe()
    }

    /// Creates a session and gives it a pod: a warm one at once, else a cold one within the timeout.
    pub async fn create_session(&self) -> Result<Created, PoolError> {
        if self.closing.is_cancelled() {
            return Err(PoolError::ShuttingDown);
        }
        let started = Instant::now();
        if let Some(failure) = self.failing_backend() {
            return Err(PoolError::Backend(BackendError::Unavailable(failure)));
        }
        let session_id = ids::session_id();
        let token = Token::for_session(&self.key, &session_id);
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            if state.sessions.len() >= self.config.max_sessions as usize {
                return Err(PoolError::AtCapacity(self.config.max_sessions));
            }
            state.sessions.insert(
                session_id.clone(),
                Session {
                    pod: None,
                    created_at: started,
                    assigned_at: None,
                    replacements: 0,
                    last_kill: None,
                    active_at: None,
                    source: None,
                    waiter: Some(tx),
                },
            );
            state.waiting.push_back(session_id.clone());
        }
        self.dispatch().await;
        // Refill behind us (warm path) or start our pod (cold path).
        self.wake.notify_one();

        let outcome = tokio::time::timeout(self.config.cold_start_timeout, rx).await;
        let state = self.lock();
        let assigned = state
            .sessions
            .get(&session_id)
            .and_then(|s| Some((s.pod.clone()?, s.source?)));
        let Some((pod_name, source)) = assigned else {
            drop(state);
            return Err(match outcome {
                Err(_elapsed) => {
                    // Give the slot back; a pod started for us joins the warm pool.
                    let mut state = self.lock();
                    state.sessions.remove(&session_id);
                    state.waiting.retain(|id| id != &session_id);
                    PoolError::ColdStartTimeout(self.config.cold_start_timeout)
                }
                Ok(_) => PoolError::ShuttingDown,
            });
        };
        let node = state.pods.get(&pod_name).and_then(|p| p.node.clone());
        drop(state);
        let websocket_url = self
            .backend
            .websocket_url(&pod_name, &session_id)
            .ok_or_else(|| PoolError::Backend(BackendError::NotFound(pod_name.clone())))?;
        let label = match source {
            ProvisionSource::Warm => "warm",
            ProvisionSource::Cold => "cold",
        };
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
            token,
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

    /// Checks `token` against session `id` first (so nobody without it learns whether `id` exists): wrong →
    /// `Unauthorized`; then unknown → `UnknownSession`; recently ended → `Ok(None)`.
    fn authorize<'s>(
        &self,
        state: &'s mut State,
        id: &str,
        token: &str,
    ) -> Result<Option<&'s mut Session>, PoolError> {
        if !self.key.verify_session_token(id, token) {
            return Err(PoolError::Unauthorized);
        }
        if state.ended.contains_key(id) {
            return Ok(None);
        }
        state
            .sessions
            .get_mut(id)
            .map(Some)
            .ok_or(PoolError::UnknownSession)
    }

    /// The state of session `id`, for its owner.
    pub fn session(&self, id: &str, token: &str) -> Result<SessionStatus, PoolError> {
        let mut state = self.lock();
        let ended_replacements = state.ended.get(id).map(|t| t.replacements);
        let Some(session) = self.authorize(&mut state, id, token)? else {
            return Ok(SessionStatus {
                session_id: id.to_owned(),
                state: SessionState::Ended,
                pod: None,
                websocket_url: None,
                replacements: ended_replacements.unwrap_or(0),
            });
        };
        let status_state = State::session_state(session);
        let replacements = session.replacements;
        let pod_name = session.pod.clone();
        let node = pod_name
            .as_ref()
            .and_then(|name| state.pods.get(name))
            .and_then(|p| p.node.clone());
        drop(state);
        Ok(SessionStatus {
            session_id: id.to_owned(),
            state: status_state,
            websocket_url: pod_name
                .as_ref()
                .and_then(|name| self.backend.websocket_url(name, id)),
            pod: pod_name.map(|name| session_pod(&name, node)),
            replacements,
        })
    }

    /// Kills session `id`'s pod; the session then gets a replacement. Returns the killed pod's name.
    pub async fn kill(&self, id: &str, token: &str) -> Result<String, PoolError> {
        let now = Instant::now();
        let pod = {
            let mut state = self.lock();
            let Some(session) = self.authorize(&mut state, id, token)? else {
                return Err(PoolError::Ended);
            };
            if let Some(last) = session.last_kill {
                let since = now.saturating_duration_since(last);
                if since < self.config.kill_cooldown {
                    return Err(PoolError::KillCooldown(self.config.kill_cooldown - since));
                }
            }
            let Some(pod) = session.pod.take() else {
                return Err(PoolError::NoPod);
            };
            session.last_kill = Some(now);
            session.assigned_at = None;
            state.start_terminating(&pod);
            state.waiting.push_front(id.to_owned());
            pod
        };
        self.metrics.kills.inc();
        tracing::info!(session = %id, %pod, "killing session pod on request");
        self.terminate(&pod).await;
        self.dispatch().await;
        self.wake.notify_one();
        Ok(pod)
    }

    /// Ends session `id` and terminates its pod.
    pub async fn end(&self, id: &str, token: &str) -> Result<(), PoolError> {
        {
            let mut state = self.lock();
            if self.authorize(&mut state, id, token)?.is_none() {
                return Ok(());
            }
        }
        self.finish(id, "deleted").await;
        Ok(())
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
        let ended: Vec<String> = self.lock().sessions.keys().cloned().collect();
        for id in ended {
            self.lock().end_session(&id, Instant::now());
            self.metrics
                .sessions_ended
                .get_or_create(&ReasonLabel { reason: "shutdown" })
                .inc();
        }
        self.backend.shutdown().await;
    }
}

fn session_pod(name: &str, node: Option<String>) -> SessionPod {
    SessionPod {
        name: name.to_owned(),
        display_name: common::names::display_name(name),
        node,
    }
}

/// Wall clock in Unix milliseconds (the pods report activity on the same clock).
fn common_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
