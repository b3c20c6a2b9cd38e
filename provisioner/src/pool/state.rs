//! Every rule of the warm pool, and the bookkeeping they decide on: every pod and session the provisioner
//! knows. Which pod goes to which session, when a session is replaced, when a pod is trimmed, who may kill what,
//! and what a backend's list means are each one method here, returning a named outcome; `pool/mod.rs` only
//! carries outcomes out (backend calls, events, timers). No I/O and no clocks of its own: callers pass `now`,
//! so every rule is unit-tested below.
//!
//! Invariants the types keep: a pod is in exactly one [`PodState`], and only a warm pod can be claimed; a
//! session has at most one pod ([`Assignment`]), and a session without one is queued (or being claimed for).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use common::api::{BoardPod, BoardState, KillTimings, ProvisionSource, SessionState};
use common::client::ClientKey;
use common::ids::{PodName, SessionId};
use tokio::sync::oneshot;

use super::PoolConfig;
use crate::backend::{PodPhase, PodRecord};

/// How long ended sessions are remembered, so their owner can still read `state: ended`.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);
/// Most ended sessions remembered at once (bounds memory whatever the churn).
const MAX_TOMBSTONES: usize = 1024;

/// What a pod is doing, in the pool's view. Each variant is a legal state; nothing else can be expressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Created, not ready yet.
    Starting,
    /// Ready and unassigned: can be handed out.
    Warm {
        /// When it became ready (the oldest warm pod goes first).
        since: Instant,
    },
    /// Being claimed for `session` with the backend right now.
    Claiming {
        /// The session it is being claimed for.
        session: SessionId,
        /// When it became ready (back to [`PodState::Warm`] if the claim fails).
        warm_since: Instant,
    },
    /// Serves `session`.
    Assigned {
        /// The session it serves.
        session: SessionId,
    },
    /// Surplus being trimmed, only while still unclaimed (see `Backend::retire`).
    Retiring,
    /// Termination requested; still counted until its exit is seen.
    Terminating,
}

/// A pod the pool knows about.
#[derive(Debug, Clone)]
struct Pod {
    state: PodState,
    /// Node it runs on, when known.
    node: Option<String>,
    /// When it was created (as far as the pool knows).
    born: Instant,
}

/// A session's current pod.
#[derive(Debug, Clone)]
struct Assignment {
    pod: PodName,
    /// When the pod was assigned.
    at: Instant,
}

/// A live session.
#[derive(Debug)]
struct Session {
    /// Who asked for it (`None`: adopted from a pod's labels, whoever it was).
    client: Option<ClientKey>,
    /// When it was created.
    created_at: Instant,
    /// Its pod; `None` while it waits for one (first, or a replacement).
    pod: Option<Assignment>,
    /// Whether its first pod came warm or cold; `None` until it has had one.
    source: Option<ProvisionSource>,
    /// How many replacement pods it received.
    replacements: u32,
    /// When it was last killed on purpose.
    last_kill: Option<Instant>,
    /// How long after that kill its replacement was assigned.
    replaced_after: Option<Duration>,
    /// The latest WebSocket activity its pod reported (kept for when the pod cannot be asked).
    active_at: Option<Instant>,
    /// Woken when the session gets a pod (only while `POST /session` waits).
    waiter: Option<oneshot::Sender<()>>,
}

impl Session {
    fn new(client: Option<ClientKey>, created_at: Instant, waiter: Option<oneshot::Sender<()>>) -> Self {
        Self {
            client,
            created_at,
            pod: None,
            source: None,
            replacements: 0,
            last_kill: None,
            replaced_after: None,
            active_at: None,
            waiter,
        }
    }

    /// Gives the session `pod`: its first (warm or cold, from when the pod became ready) or a replacement.
    fn assign(&mut self, pod: &PodName, warm_since: Option<Instant>, now: Instant) -> ClaimOutcome {
        self.pod = Some(Assignment {
            pod: pod.clone(),
            at: now,
        });
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.send(());
        }
        if self.source.is_some() {
            self.replacements += 1;
            let mut recovery = None;
            if let Some(killed) = self.last_kill
                && self.replaced_after.is_none()
            {
                let after = now.saturating_duration_since(killed);
                self.replaced_after = Some(after);
                let warm = warm_since.is_none_or(|ready| ready <= killed);
                recovery = Some(Recovery {
                    source: if warm {
                        ProvisionSource::Warm
                    } else {
                        ProvisionSource::Cold
                    },
                    after,
                });
            }
            return ClaimOutcome::Replacement(recovery);
        }
        let warm = warm_since.is_none_or(|ready| ready <= self.created_at);
        let source = if warm {
            ProvisionSource::Warm
        } else {
            ProvisionSource::Cold
        };
        self.source = Some(source);
        ClaimOutcome::First(source)
    }
}

/// An ended session, remembered for a while.
#[derive(Debug)]
struct Tombstone {
    replacements: u32,
    ended_at: Instant,
}

/// Pod counts, as `GET /pool` and the metrics report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Ready and unassigned.
    pub warm: u32,
    /// Not ready yet.
    pub starting: u32,
    /// Serving (or being claimed for) a session.
    pub assigned: u32,
    /// Termination requested, exit not seen yet.
    pub terminating: u32,
}

impl Counts {
    /// Every pod that exists.
    pub fn total(&self) -> u32 {
        self.warm + self.starting + self.assigned + self.terminating
    }
}

/// Why [`State::admit`] refused a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitRefused {
    /// Every session slot is taken.
    AtCapacity,
    /// The client already holds its share (`max_sessions_per_client`).
    TooManySessions,
}

/// What [`State::forget_pod`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodGone {
    /// The pool did not know the pod.
    Unknown,
    /// It served nobody.
    Free,
    /// It served this session, which now waits for a replacement (at the front of the queue).
    Orphaned(SessionId),
}

/// A waiting session and the warm pod it gets: claim it with the backend, then [`State::complete_claim`] or
/// [`State::fail_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The session.
    pub session: SessionId,
    /// The pod being claimed for it.
    pub pod: PodName,
}

/// What a confirmed claim meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The session's first pod, warm or cold.
    First(ProvisionSource),
    /// A replacement for a pod the session lost; with the recovery when the loss was a kill.
    Replacement(Option<Recovery>),
    /// Nobody wants the pod any more (the session ended, gave up waiting, or got another pod meanwhile): the
    /// caller terminates it.
    Unwanted,
}

/// How a kill was healed: where the replacement came from and how long after the kill it was assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// `Warm` when the replacement was already warm as the kill was accepted.
    pub source: ProvisionSource,
    /// From the kill accepted to the replacement assigned.
    pub after: Duration,
}

/// Why [`State::kill`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillRefused {
    /// No such session.
    Unknown,
    /// The session is over.
    Ended,
    /// Killed too recently; this much longer to wait.
    Cooldown(Duration),
    /// The session has no pod right now (a replacement is on its way).
    NoPod,
}

/// What [`State::end_session`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// The session was not live (unknown or already ended): nothing changed.
    NotLive,
    /// The session ended; these pods (its pod, or one being claimed for it) must be terminated.
    Ended {
        /// Pods to terminate.
        pods: Vec<PodName>,
    },
}

/// A live session as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    /// Active or replacing.
    pub state: SessionState,
    /// Its pod and the pod's node, while it has one.
    pub pod: Option<(PodName, Option<String>)>,
    /// Where its first pod came from, once it has had one.
    pub source: Option<ProvisionSource>,
    /// Replacement pods it received.
    pub replacements: u32,
    /// The steps of its last kill, if it was killed.
    pub last_kill: Option<KillTimings>,
}

/// What [`State::lookup`] knows of a session id.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A live session.
    Live(SessionView),
    /// Recently ended, after this many replacements.
    Ended {
        /// Replacement pods it received.
        replacements: u32,
    },
    /// Never known, or forgotten.
    Unknown,
}

/// A session to check for use: its pod, when the pod was assigned, and the latest evidence that it was in use
/// (the activity its pod last reported, or its assignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleCandidate {
    /// The session.
    pub session: SessionId,
    /// Its pod, to be asked for its activity.
    pub pod: PodName,
    /// When the pod was assigned.
    pub assigned_at: Instant,
    /// The latest known use.
    pub evidence: Instant,
}

/// What a pod reports of its WebSockets (its `/activity`), as the unused-session rule reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodUsage {
    /// WebSockets open now.
    pub open: u32,
    /// WebSockets it has accepted since it started (a warm pod has had none: nobody can reach it before it is
    /// assigned).
    pub opened_total: u64,
    /// Since its last frame, open or close.
    pub quiet: Duration,
}

/// Why a session nobody uses ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unused {
    /// Its WebSocket sent nothing for the idle timeout (or its pod could not be asked for that long).
    Idle,
    /// Its pod saw no WebSocket within the first-connect timeout of its assignment: a client that asked for a
    /// session and never used it.
    NeverConnected,
    /// Its pod has had no open WebSocket for the reconnect timeout: a closed tab, a crashed browser, a reload
    /// whose goodbye never arrived.
    Disconnected,
}

impl Unused {
    /// Whether `candidate`'s session is unused at `now`, from its pod's `usage` (`None`: the pod could not be
    /// asked, so only the idle timeout since the last evidence of use applies).
    pub fn verdict(
        candidate: &IdleCandidate,
        usage: Option<PodUsage>,
        now: Instant,
        config: &PoolConfig,
    ) -> Option<Unused> {
        let since_assigned = now.saturating_duration_since(candidate.assigned_at);
        let Some(usage) = usage else {
            let quiet = now.saturating_duration_since(candidate.evidence);
            return (quiet >= config.idle_timeout).then_some(Unused::Idle);
        };
        // The pod's clock of quiet may reach back before the assignment (a warm pod waited); the session is
        // never quiet for longer than it has had this pod.
        let quiet = usage.quiet.min(since_assigned);
        if usage.open == 0 && usage.opened_total == 0 {
            return (since_assigned >= config.first_connect_timeout).then_some(Unused::NeverConnected);
        }
        if usage.open == 0 && quiet >= config.reconnect_timeout {
            return Some(Unused::Disconnected);
        }
        (quiet >= config.idle_timeout).then_some(Unused::Idle)
    }
}

/// What a [`State::resync`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resync {
    /// Sessions that lost their pod (they now wait for a replacement).
    pub orphaned: Vec<SessionId>,
    /// Sessions learned from pod labels.
    pub adopted: Vec<SessionId>,
    /// Pods to terminate (labelled for an ended session, a session's second pod, or a termination that did
    /// not take).
    pub terminate: Vec<PodName>,
    /// Surplus pods whose trimming did not take, and warm pods of an older template: trim them, if still
    /// unclaimed.
    pub retire: Vec<PodName>,
    /// Sessions another provisioner ended (their pods say so): ended here too.
    pub ended: Vec<SessionId>,
}

/// Everything the pool knows.
#[derive(Debug, Default)]
pub struct State {
    /// Pods by name.
    pods: HashMap<PodName, Pod>,
    /// Live sessions by id.
    sessions: HashMap<SessionId, Session>,
    /// Sessions waiting for a pod, served first come first served (replacements go to the front).
    waiting: VecDeque<SessionId>,
    /// Ended sessions by id.
    ended: HashMap<SessionId, Tombstone>,
}

impl State {
    /// Counts pods by what they are doing.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for pod in self.pods.values() {
            match pod.state {
                PodState::Starting => counts.starting += 1,
                PodState::Warm { .. } => counts.warm += 1,
                PodState::Claiming { .. } | PodState::Assigned { .. } => counts.assigned += 1,
                PodState::Retiring | PodState::Terminating => counts.terminating += 1,
            }
        }
        counts
    }

    /// Whether a pod is being claimed for `session` right now.
    pub fn claiming_for(&self, session: &str) -> bool {
        self.pods
            .values()
            .any(|pod| matches!(&pod.state, PodState::Claiming { session: s, .. } if s.as_str() == session))
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The ids of every live session.
    pub fn live_sessions(&self) -> Vec<SessionId> {
        self.sessions.keys().cloned().collect()
    }

    /// A pod's state, if the pool knows it.
    pub fn pod_state(&self, name: &str) -> Option<&PodState> {
        self.pods.get(name).map(|pod| &pod.state)
    }

    /// How many pods to start now: enough for the warm target plus every waiting session, minus what is
    /// already warm or starting, within the starting cap and the hard total cap.
    pub fn pods_to_create(&self, config: &PoolConfig) -> u32 {
        let counts = self.counts();
        let waiting = u32::try_from(self.waiting.len()).unwrap_or(u32::MAX);
        let demand = config.warm_target.saturating_add(waiting);
        let supply = counts.warm + counts.starting;
        let wanted = demand.saturating_sub(supply);
        let room_starting = config.max_starting.saturating_sub(counts.starting);
        let room_total = config.pod_cap().saturating_sub(counts.total());
        wanted.min(room_starting).min(room_total)
    }

    /// Records a pod this pool just asked the backend to create.
    pub fn add_starting(&mut self, name: PodName) {
        self.pods.insert(
            name,
            Pod {
                state: PodState::Starting,
                node: None,
                born: Instant::now(),
            },
        );
    }

    /// Every pod, as the pod board shows it at `now`, by name.
    pub fn board(&self, now: Instant) -> Vec<BoardPod> {
        let mut pods: Vec<BoardPod> = self
            .pods
            .iter()
            .map(|(name, pod)| BoardPod {
                name: name.clone(),
                state: match pod.state {
                    PodState::Starting => BoardState::Starting,
                    PodState::Warm { .. } => BoardState::Warm,
                    PodState::Claiming { .. } | PodState::Assigned { .. } => BoardState::Assigned,
                    PodState::Retiring | PodState::Terminating => BoardState::Terminating,
                },
                age_ms: u64::try_from(now.saturating_duration_since(pod.born).as_millis())
                    .unwrap_or(u64::MAX),
                node: pod.node.clone(),
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// The pod passed its readiness check: a starting pod turns warm.
    pub fn mark_ready(&mut self, name: &str, node: Option<String>, now: Instant) {
        if let Some(pod) = self.pods.get_mut(name)
            && pod.state == PodState::Starting
        {
            pod.state = PodState::Warm { since: now };
            if node.is_some() {
                pod.node = node;
            }
        }
    }

    /// The pod is gone (it exited, the backend no longer lists it, or it could not be created). If it served a
    /// live session, that session now waits for a replacement, at the front of the queue.
    pub fn forget_pod(&mut self, name: &str) -> PodGone {
        let Some(pod) = self.pods.remove(name) else {
            return PodGone::Unknown;
        };
        let PodState::Assigned { session: session_id } = pod.state else {
            return PodGone::Free;
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return PodGone::Free;
        };
        if session.pod.as_ref().is_none_or(|a| a.pod != name) {
            return PodGone::Free;
        }
        session.pod = None;
        if !self.waiting.contains(&session_id) {
            self.waiting.push_front(session_id.clone());
        }
        PodGone::Orphaned(session_id)
    }

    /// A new session `id` of `client`, created `now`, waiting for a pod (at the back of the queue); `waiter` is
    /// woken when it gets one. Refused when the client already holds its share, so another client still gets
    /// in, and when every session slot is taken.
    pub fn admit(
        &mut self,
        id: SessionId,
        client: ClientKey,
        now: Instant,
        waiter: oneshot::Sender<()>,
        config: &PoolConfig,
    ) -> Result<(), AdmitRefused> {
        let held = self
            .sessions
            .values()
            .filter(|s| s.client == Some(client))
            .count();
        if held >= config.max_sessions_per_client as usize {
            return Err(AdmitRefused::TooManySessions);
        }
        if self.sessions.len() >= config.max_sessions as usize {
            return Err(AdmitRefused::AtCapacity);
        }
        self.sessions
            .insert(id.clone(), Session::new(Some(client), now, Some(waiter)));
        self.waiting.push_back(id);
        Ok(())
    }

    /// A new session gave up waiting for its first pod (the cold-start timeout): its slot is free again, and a
    /// pod started for it joins the warm pool. No tombstone: the session never started.
    pub fn abandon(&mut self, id: &str) {
        if self.sessions.get(id).is_some_and(|s| s.pod.is_none()) {
            self.sessions.remove(id);
            self.waiting.retain(|waiting| waiting != id);
        }
    }

    /// Takes the next (waiting session, warm pod) pair and marks the pod as being claimed. The oldest warm pod
    /// goes first. Returns `None` when nobody waits or no pod is warm.
    pub fn next_match(&mut self) -> Option<Match> {
        let (pod_name, warm_since) = self
            .pods
            .iter()
            .filter_map(|(name, pod)| match pod.state {
                PodState::Warm { since } => Some((name, since)),
                _ => None,
            })
            .min_by_key(|(name, since)| (*since, *name))
            .map(|(name, since)| (name.clone(), since))?;
        let session = loop {
            let candidate = self.waiting.pop_front()?;
            if self.sessions.get(&candidate).is_some_and(|s| s.pod.is_none()) {
                break candidate;
            }
        };
        if let Some(pod) = self.pods.get_mut(&pod_name) {
            pod.state = PodState::Claiming {
                session: session.clone(),
                warm_since,
            };
        }
        Some(Match {
            session,
            pod: pod_name,
        })
    }

    /// The backend confirmed the claim of `m`: the session has its pod, unless nobody wants it any more.
    pub fn complete_claim(&mut self, m: &Match, now: Instant) -> ClaimOutcome {
        let warm_since = match self.pods.get(&m.pod).map(|pod| &pod.state) {
            Some(PodState::Claiming { session, warm_since }) if *session == m.session => *warm_since,
            // Ended meanwhile (its pods were set terminating), or forgotten by a resync: the session, if it
            // still waits, goes back to the front of the queue.
            _ => {
                self.requeue(&m.session);
                self.set_pod_state(&m.pod, PodState::Terminating);
                return ClaimOutcome::Unwanted;
            }
        };
        let Some(session) = self.sessions.get_mut(&m.session).filter(|s| s.pod.is_none()) else {
            self.set_pod_state(&m.pod, PodState::Terminating);
            return ClaimOutcome::Unwanted;
        };
        let outcome = session.assign(&m.pod, Some(warm_since), now);
        self.set_pod_state(
            &m.pod,
            PodState::Assigned {
                session: m.session.clone(),
            },
        );
        outcome
    }

    /// The backend refused the claim of `m`. On conflict the pod belongs to someone else: forget it (the next
    /// resync shows its real state); otherwise it is warm again. Either way the session waits again, at the
    /// front.
    pub fn fail_claim(&mut self, m: &Match, conflict: bool) {
        if conflict {
            self.pods.remove(&m.pod);
        } else if let Some(pod) = self.pods.get_mut(&m.pod)
            && let PodState::Claiming { warm_since, .. } = pod.state
        {
            pod.state = PodState::Warm { since: warm_since };
        }
        self.requeue(&m.session);
    }

    /// Puts a live session without a pod back at the front of the queue.
    fn requeue(&mut self, id: &SessionId) {
        if self.sessions.get(id).is_some_and(|s| s.pod.is_none()) && !self.waiting.contains(id) {
            self.waiting.push_front(id.clone());
        }
    }

    fn set_pod_state(&mut self, name: &(impl std::borrow::Borrow<str> + ?Sized), state: PodState) {
        if let Some(pod) = self.pods.get_mut(name.borrow()) {
            pod.state = state;
        }
    }

    /// Warm pods beyond the target while nobody waits, newest first: marks them retiring and returns them, to
    /// be trimmed only while unclaimed.
    pub fn trim_surplus(&mut self, config: &PoolConfig) -> Vec<PodName> {
        if !self.waiting.is_empty() {
            return Vec::new();
        }
        let mut warm: Vec<(&PodName, Instant)> = self
            .pods
            .iter()
            .filter_map(|(name, pod)| match pod.state {
                PodState::Warm { since } => Some((name, since)),
                _ => None,
            })
            .collect();
        let surplus = warm.len().saturating_sub(config.warm_target as usize);
        warm.sort_by_key(|(name, since)| (std::cmp::Reverse(*since), *name));
        let trimmed: Vec<PodName> = warm
            .into_iter()
            .take(surplus)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &trimmed {
            self.set_pod_state(name, PodState::Retiring);
        }
        trimmed
    }

    /// The session's owner kills its pod: the pod is to be terminated (returned), and the session waits for a
    /// replacement at the front of the queue. At most one kill per `cooldown`.
    pub fn kill(&mut self, id: &str, now: Instant, cooldown: Duration) -> Result<PodName, KillRefused> {
        if self.ended.contains_key(id) {
            return Err(KillRefused::Ended);
        }
        let session = self.sessions.get_mut(id).ok_or(KillRefused::Unknown)?;
        if let Some(last) = session.last_kill {
            let since = now.saturating_duration_since(last);
            if since < cooldown {
                return Err(KillRefused::Cooldown(cooldown - since));
            }
        }
        let Some(assignment) = session.pod.take() else {
            return Err(KillRefused::NoPod);
        };
        session.last_kill = Some(now);
        session.replaced_after = None;
        let id = SessionId::new(id);
        self.set_pod_state(&assignment.pod, PodState::Terminating);
        self.waiting.push_front(id);
        Ok(assignment.pod)
    }

    /// Ends a live session: it becomes a tombstone, and its pod (or a pod being claimed for it) is to be
    /// terminated.
    pub fn end_session(&mut self, id: &str, now: Instant) -> EndOutcome {
        let Some((id, session)) = self.sessions.remove_entry(id) else {
            return EndOutcome::NotLive;
        };
        self.waiting.retain(|waiting| *waiting != id);
        let pods: Vec<PodName> = self
            .pods
            .iter()
            .filter(|(_, pod)| match &pod.state {
                PodState::Assigned { session } | PodState::Claiming { session, .. } => *session == id,
                _ => false,
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &pods {
            self.set_pod_state(name, PodState::Terminating);
        }
        self.ended.insert(
            id,
            Tombstone {
                replacements: session.replacements,
                ended_at: now,
            },
        );
        self.prune_tombstones(now);
        EndOutcome::Ended { pods }
    }

    /// Forgets old tombstones, and the oldest ones beyond [`MAX_TOMBSTONES`].
    pub fn prune_tombstones(&mut self, now: Instant) {
        self.ended
            .retain(|_, t| now.saturating_duration_since(t.ended_at) < TOMBSTONE_TTL);
        while self.ended.len() > MAX_TOMBSTONES {
            let oldest = self
                .ended
                .iter()
                .min_by_key(|(_, t)| t.ended_at)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.ended.remove(&id),
                None => break,
            };
        }
    }

    /// What is known of session `id`.
    pub fn lookup(&self, id: &str) -> Lookup {
        if let Some(tombstone) = self.ended.get(id) {
            return Lookup::Ended {
                replacements: tombstone.replacements,
            };
        }
        let Some(session) = self.sessions.get(id) else {
            return Lookup::Unknown;
        };
        let pod = session.pod.as_ref().map(|a| {
            let node = self.pods.get(&a.pod).and_then(|p| p.node.clone());
            (a.pod.clone(), node)
        });
        Lookup::Live(SessionView {
            state: if pod.is_some() {
                SessionState::Active
            } else {
                SessionState::Replacing
            },
            pod,
            source: session.source,
            replacements: session.replacements,
            last_kill: session.last_kill.map(|_| KillTimings {
                replacement_assigned_ms: session.replaced_after.map(|d| d.as_secs_f64() * 1000.0),
                answered_ms: None,
            }),
        })
    }

    /// Live sessions older than `max_age`.
    pub fn expired_sessions(&self, max_age: Duration, now: Instant) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.created_at) >= max_age)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Sessions with a pod, to be checked for idleness.
    pub fn idle_candidates(&self) -> Vec<IdleCandidate> {
        self.sessions
            .iter()
            .filter_map(|(id, s)| {
                let assignment = s.pod.as_ref()?;
                let evidence = s
                    .active_at
                    .map_or(assignment.at, |active| active.max(assignment.at));
                Some(IdleCandidate {
                    session: id.clone(),
                    pod: assignment.pod.clone(),
                    assigned_at: assignment.at,
                    evidence,
                })
            })
            .collect()
    }

    /// Session `id`'s pod reported its last WebSocket activity at `at`.
    pub fn record_activity(&mut self, id: &str, at: Option<Instant>) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.active_at = at;
        }
    }

    /// Brings the pool's view in line with the backend's list: adopts pods it did not know, drops pods that
    /// no longer exist (their sessions then wait for a replacement), and reconciles session labels:
    ///
    /// - a pod labelled for a session this pool does not know (a restart, or another replica) adopts that
    ///   session, keeping its age when the backend knows it; tokens are derived from the id, so its owner
    ///   keeps access;
    /// - a session waiting for a pod takes a pod already labelled for it;
    /// - a session with two pods (two replicas replaced it at once) keeps the pod whose name sorts first, the
    ///   same choice on every replica; the other is terminated;
    /// - a pod labelled for an ended session is terminated;
    /// - a pod on which another provisioner recorded its session's end ends that session here too (and is
    ///   terminated, in case the other one did not get that far): it is never replaced;
    /// - a pod still not ready `start_timeout` after its creation is terminated, whoever created it;
    /// - a warm pod of an older template (the deployment was upgraded) is trimmed, to be replaced.
    pub fn resync(&mut self, listed: &[PodRecord], now: Instant, start_timeout: Duration) -> Resync {
        let mut outcome = Resync::default();
        let gone: Vec<PodName> = self
            .pods
            .iter()
            // A pod this pool is creating may not be listed yet; it reports itself with events.
            .filter(|(name, pod)| pod.state != PodState::Starting && !listed.iter().any(|r| r.name == **name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let PodGone::Orphaned(session) = self.forget_pod(name.as_str()) {
                outcome.orphaned.push(session);
            }
        }
        for record in listed {
            if record.ended {
                self.ended_elsewhere(record, now, &mut outcome);
                continue;
            }
            if record.phase == PodPhase::Starting
                && record.session.is_none()
                && record.age.is_some_and(|age| age >= start_timeout)
                && !matches!(self.pod_state(record.name.as_str()), Some(PodState::Terminating))
            {
                self.pods.insert(
                    record.name.clone(),
                    Pod {
                        state: PodState::Terminating,
                        node: record.node.clone(),
                        born: born(record, now),
                    },
                );
                outcome.terminate.push(record.name.clone());
                continue;
            }
            match self.pods.get_mut(&record.name) {
                Some(pod) => {
                    match pod.state {
                        // Still there after we asked for its end (a failed call, or a provisioner killed
                        // midway): ask again. Backends list a pod as gone as soon as its termination is under
                        // way.
                        PodState::Terminating => {
                            outcome.terminate.push(record.name.clone());
                            continue;
                        }
                        PodState::Retiring => {
                            outcome.retire.push(record.name.clone());
                            continue;
                        }
                        PodState::Starting if record.phase == PodPhase::Ready => {
                            pod.state = PodState::Warm { since: now };
                            pod.node = record.node.clone();
                        }
                        _ => {}
                    }
                    // Claimed elsewhere. (The reverse, labelled here and unlabelled in the list, is a list that
                    // lags behind a claim of ours, and is ignored.)
                    if let Some(session) = &record.session
                        && matches!(pod.state, PodState::Starting | PodState::Warm { .. })
                    {
                        pod.state = PodState::Assigned {
                            session: session.clone(),
                        };
                    }
                }
                None => {
                    let state = match (&record.session, record.phase) {
                        (Some(session), _) => PodState::Assigned {
                            session: session.clone(),
                        },
                        (None, PodPhase::Ready) => PodState::Warm { since: now },
                        (None, PodPhase::Starting) => PodState::Starting,
                    };
                    self.pods.insert(
                        record.name.clone(),
                        Pod {
                            state,
                            node: record.node.clone(),
                            born: born(record, now),
                        },
                    );
                }
            }
            if let Some(session) = &record.session {
                self.reconcile_label(&record.name, session, record.session_age, now, &mut outcome);
            } else if record.outdated
                && matches!(self.pod_state(record.name.as_str()), Some(PodState::Warm { .. }))
            {
                // A warm pod of an older template (an upgrade): replace it. Assigned ones finish their session.
                self.set_pod_state(&record.name, PodState::Retiring);
                outcome.retire.push(record.name.clone());
            }
        }
        outcome
    }

    /// A listed pod whose session another provisioner ended: see [`State::resync`].
    fn ended_elsewhere(&mut self, record: &PodRecord, now: Instant, outcome: &mut Resync) {
        if let Some(session) = &record.session
            && let EndOutcome::Ended { pods } = self.end_session(session.as_str(), now)
        {
            outcome.ended.push(session.clone());
            outcome
                .terminate
                .extend(pods.into_iter().filter(|pod| *pod != record.name));
        }
        // Terminated here too (idempotent), in case the other provisioner did not get that far.
        self.pods.insert(
            record.name.clone(),
            Pod {
                state: PodState::Terminating,
                node: record.node.clone(),
                born: born(record, now),
            },
        );
        outcome.terminate.push(record.name.clone());
    }

    /// The pod `name` says its session `session` ended (another provisioner recorded it): the session ends here
    /// too. Returns what [`State::end_session`] did.
    pub fn ended_elsewhere_event(&mut self, name: &PodName, session: &SessionId, now: Instant) -> EndOutcome {
        let outcome = self.end_session(session.as_str(), now);
        self.set_pod_state(name, PodState::Terminating);
        outcome
    }

    /// One pod labelled for `session_id`: see [`State::resync`].
    fn reconcile_label(
        &mut self,
        pod_name: &PodName,
        session_id: &SessionId,
        age: Option<Duration>,
        now: Instant,
        outcome: &mut Resync,
    ) {
        match self.pod_state(pod_name.as_str()) {
            // Ours, for this session (or a list that lags behind our own claim of it for another one).
            Some(PodState::Assigned { session }) if session == session_id => {}
            _ => return,
        }
        if self.ended.contains_key(session_id) {
            self.set_pod_state(pod_name, PodState::Terminating);
            outcome.terminate.push(pod_name.clone());
            return;
        }
        let Some(session) = self.sessions.get_mut(session_id) else {
            let created_at = age.and_then(|age| now.checked_sub(age)).unwrap_or(now);
            let mut session = Session::new(None, created_at, None);
            session.assign(pod_name, None, now);
            self.sessions.insert(session_id.clone(), session);
            outcome.adopted.push(session_id.clone());
            return;
        };
        match session.pod.as_ref().map(|a| a.pod.clone()) {
            Some(current) if current == *pod_name => {}
            None => {
                session.assign(pod_name, None, now);
                self.waiting.retain(|id| id != session_id);
            }
            Some(current) => {
                let loser = if *pod_name < current {
                    session.pod = Some(Assignment {
                        pod: pod_name.clone(),
                        at: now,
                    });
                    current
                } else {
                    pod_name.clone()
                };
                self.set_pod_state(&loser, PodState::Terminating);
                outcome.terminate.push(loser);
            }
        }
    }
}

/// When a listed pod was created, as far as its record says (else: now).
fn born(record: &PodRecord, now: Instant) -> Instant {
    record.age.and_then(|age| now.checked_sub(age)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::fixtures::{Given, RecordExt, client, config, record};

    /// The start timeout of the resyncs below.
    const START: Duration = Duration::from_secs(15);

    #[test]
    fn fills_to_target_counting_starting_pods() {
        let mut state = State::default();
        let c = config(2, 10, 4);
        assert_eq!(state.pods_to_create(&c), 2);
        state.add_starting("a".into());
        assert_eq!(
            state.pods_to_create(&c),
            1,
            "a starting pod counts toward the target"
        );
        state.add_starting("b".into());
        assert_eq!(state.pods_to_create(&c), 0);
    }

    #[test]
    fn waiting_sessions_add_demand_within_the_starting_cap() {
        let given = Given::new().waiting(&["s0", "s1", "s2", "s3", "s4"]);
        assert_eq!(given.state.pods_to_create(&config(2, 10, 3)), 3, "starting cap");
        assert_eq!(given.state.pods_to_create(&config(2, 10, 100)), 7);
    }

    #[test]
    fn total_cap_is_never_exceeded() {
        let c = config(2, 3, 100);
        let mut given = Given::with(c.clone()).waiting(&["s0", "s1", "s2"]);
        // Sessions beyond the cap are refused; the three admitted ones add demand.
        assert_eq!(given.try_admit("s3"), Err(AdmitRefused::AtCapacity));
        assert_eq!(given.state.pods_to_create(&c), 5);
        for i in 0..5 {
            given.state.add_starting(format!("p{i}").into());
        }
        // Terminating pods still count.
        given.state.set_pod_state("p0", PodState::Terminating);
        assert_eq!(given.state.counts().total(), 5);
        assert_eq!(given.state.pods_to_create(&c), 0);
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_another_still_gets_in() {
        let mut c = config(2, 10, 4);
        c.max_sessions_per_client = 3;
        let mut given = Given::with(c);
        let greedy = client([203, 0, 113, 7]);
        for id in ["g1", "g2", "g3"] {
            assert_eq!(given.try_admit_for(id, greedy), Ok(()));
        }
        assert_eq!(
            given.try_admit_for("g4", greedy),
            Err(AdmitRefused::TooManySessions)
        );
        assert_eq!(given.try_admit_for("other", client([198, 51, 100, 1])), Ok(()));
        // An ended session frees its share; an abandoned one too.
        given.state.end_session("g1", given.now);
        assert_eq!(given.try_admit_for("g4", greedy), Ok(()));
        given.state.abandon("g4");
        assert_eq!(given.try_admit_for("g5", greedy), Ok(()));
        // The whole pool still caps everyone.
        let mut full = Given::with(config(2, 2, 4)).waiting(&["a", "b"]);
        assert_eq!(full.try_admit("c"), Err(AdmitRefused::AtCapacity));
    }

    #[test]
    fn unused_sessions_end_by_the_rule_that_fits_what_their_pod_saw() {
        let c = config(2, 10, 4);
        let given = Given::new().assigned("s", "p");
        let candidate = given.state.idle_candidates().remove(0);
        let at = |secs: u64| candidate.assigned_at + Duration::from_secs(secs);
        let usage = |open, opened_total, quiet_secs| {
            Some(PodUsage {
                open,
                opened_total,
                quiet: Duration::from_secs(quiet_secs),
            })
        };
        let verdict = |usage, secs| Unused::verdict(&candidate, usage, at(secs), &c);
        // Never connected: 30 s after the assignment, however long the warm pod was quiet before.
        assert_eq!(verdict(usage(0, 0, 9999), 29), None);
        assert_eq!(verdict(usage(0, 0, 9999), 30), Some(Unused::NeverConnected));
        // Connected once, gone since: 60 s after the last close.
        assert_eq!(verdict(usage(0, 1, 59), 300), None);
        assert_eq!(verdict(usage(0, 1, 60), 300), Some(Unused::Disconnected));
        // Open but silent: the idle timeout.
        assert_eq!(verdict(usage(1, 1, 599), 9999), None);
        assert_eq!(verdict(usage(1, 1, 600), 9999), Some(Unused::Idle));
        // The pod cannot be asked: idle from the last evidence of use only.
        assert_eq!(verdict(None, 599), None);
        assert_eq!(verdict(None, 600), Some(Unused::Idle));
    }

    #[test]
    fn matches_oldest_warm_pod_to_first_waiting_session() {
        let mut state = Given::new()
            .warm("young", 2)
            .warm("old", 1)
            .starting("cold")
            .waiting(&["s1", "s2"])
            .state;
        let next = |state: &mut State| {
            state
                .next_match()
                .map(|m| (m.session.to_string(), m.pod.to_string()))
        };
        assert_eq!(next(&mut state), Some(("s1".into(), "old".into())));
        assert_eq!(next(&mut state), Some(("s2".into(), "young".into())));
        assert_eq!(next(&mut state), None, "starting pods are never handed out");
        assert_eq!(state.counts().assigned, 2);
    }

    #[test]
    fn claim_completion_sets_source_and_counts_replacements() {
        let mut given = Given::new().warm("warm", 0).waiting_at("s", 1);
        let m = given.state.next_match().unwrap();
        assert_eq!(
            given.state.complete_claim(&m, given.now),
            ClaimOutcome::First(ProvisionSource::Warm)
        );
        assert_eq!(given.view("s").source, Some(ProvisionSource::Warm));
        assert_eq!(given.view("s").replacements, 0);

        // The pod dies: the session waits at the front and the next pod is a replacement.
        assert_eq!(given.state.forget_pod("warm"), PodGone::Orphaned("s".into()));
        assert_eq!(given.view("s").state, SessionState::Replacing);
        given = given.warm("next", 5);
        let m = given.state.next_match().unwrap();
        assert_eq!(
            given.state.complete_claim(&m, given.now),
            ClaimOutcome::Replacement(None),
            "a pod that died by itself is no kill's recovery"
        );
        assert_eq!(given.view("s").replacements, 1);
        assert_eq!(
            given.view("s").source,
            Some(ProvisionSource::Warm),
            "source is the first pod's"
        );
    }

    #[test]
    fn pod_ready_after_session_creation_is_cold() {
        let mut given = Given::new().waiting_at("s", 0).warm_ms("p", 300);
        let m = given.state.next_match().unwrap();
        assert_eq!(
            given.state.complete_claim(&m, given.now),
            ClaimOutcome::First(ProvisionSource::Cold)
        );
    }

    #[test]
    fn conflict_forgets_the_pod_and_requeues_the_session() {
        let mut given = Given::new().warm("p", 0).waiting(&["other", "s"]);
        let first = given.state.next_match().unwrap();
        given.state.fail_claim(&first, true);
        assert!(given.state.pod_state("p").is_none());
        // A failed claim without conflict makes the pod warm again; the session is first in line either way.
        given = given.warm("q", 1);
        let again = given.state.next_match().unwrap();
        assert_eq!((again.session.as_str(), again.pod.as_str()), ("other", "q"));
        given.state.fail_claim(&again, false);
        assert!(matches!(given.state.pod_state("q"), Some(PodState::Warm { .. })));
        assert_eq!(given.state.next_match().map(|m| m.session), Some("other".into()));
    }

    #[test]
    fn a_claim_nobody_wants_any_more_releases_the_pod() {
        // The session ended while its claim was in flight.
        let mut given = Given::new().warm("p", 0).waiting(&["s"]);
        let m = given.state.next_match().unwrap();
        assert_eq!(
            given.state.end_session("s", given.now),
            EndOutcome::Ended {
                pods: vec!["p".into()]
            }
        );
        assert_eq!(given.state.complete_claim(&m, given.now), ClaimOutcome::Unwanted);
        assert_eq!(given.state.pod_state("p"), Some(&PodState::Terminating));

        // The session gave up waiting.
        let mut given = Given::new().warm("p", 0).waiting(&["s"]);
        let m = given.state.next_match().unwrap();
        given.state.abandon("s");
        assert_eq!(given.state.complete_claim(&m, given.now), ClaimOutcome::Unwanted);
        assert_eq!(given.state.lookup("s"), Lookup::Unknown, "no tombstone");

        // A resync forgot the pod mid-claim: the session waits again, first in line.
        let mut given = Given::new().warm("p", 0).waiting(&["s", "later"]);
        let m = given.state.next_match().unwrap();
        given.state.forget_pod("p");
        assert_eq!(given.state.complete_claim(&m, given.now), ClaimOutcome::Unwanted);
        given = given.warm("q", 1);
        assert_eq!(given.state.next_match().map(|m| m.session), Some("s".into()));
    }

    #[test]
    fn ending_a_session_terminates_its_pod_and_leaves_a_tombstone() {
        let mut given = Given::new().assigned("s", "p");
        assert_eq!(
            given.state.end_session("s", given.now),
            EndOutcome::Ended {
                pods: vec!["p".into()]
            }
        );
        assert_eq!(given.state.counts().terminating, 1);
        assert_eq!(given.state.lookup("s"), Lookup::Ended { replacements: 0 });
        assert_eq!(given.state.end_session("s", given.now), EndOutcome::NotLive);
        given.state.prune_tombstones(given.now + TOMBSTONE_TTL);
        assert_eq!(given.state.lookup("s"), Lookup::Unknown);
    }

    #[test]
    fn kills_queue_a_replacement_first_and_cool_down() {
        let cooldown = Duration::from_secs(5);
        let mut given = Given::new().assigned("s", "p").waiting(&["newcomer"]);
        let now = given.now;
        assert_eq!(given.state.kill("s", now, cooldown), Ok("p".into()));
        assert_eq!(given.state.pod_state("p"), Some(&PodState::Terminating));
        assert_eq!(given.view("s").state, SessionState::Replacing);
        assert_eq!(
            given.state.kill("s", now + Duration::from_secs(2), cooldown),
            Err(KillRefused::Cooldown(Duration::from_secs(3)))
        );
        assert_eq!(
            given.state.kill("s", now + cooldown, cooldown),
            Err(KillRefused::NoPod)
        );
        // The killed session is served before the newcomer.
        given = given.warm("q", 1);
        let m = given.state.next_match().unwrap();
        assert_eq!(m.session, "s");
        // q became ready after the kill: a cold recovery.
        assert_eq!(
            given.state.complete_claim(&m, now + Duration::from_millis(1040)),
            ClaimOutcome::Replacement(Some(Recovery {
                source: ProvisionSource::Cold,
                after: Duration::from_millis(1040),
            }))
        );
        assert_eq!(given.state.kill("s", now + cooldown, cooldown), Ok("q".into()));
        // r was warm before this kill: a warm recovery.
        given = given.warm("r", 2);
        let m = given.state.next_match().unwrap();
        assert_eq!(
            given
                .state
                .complete_claim(&m, now + cooldown + Duration::from_millis(30)),
            ClaimOutcome::Replacement(Some(Recovery {
                source: ProvisionSource::Warm,
                after: Duration::from_millis(30),
            }))
        );
        assert_eq!(given.state.kill("nope", now, cooldown), Err(KillRefused::Unknown));
        given.state.end_session("s", now);
        assert_eq!(given.state.kill("s", now, cooldown), Err(KillRefused::Ended));
    }

    #[test]
    fn surplus_warm_pods_are_trimmed_newest_first_only_when_nobody_waits() {
        let mut given = Given::new().warm("a", 0).warm("b", 1).warm("c", 2);
        assert_eq!(
            given.state.trim_surplus(&config(2, 10, 4)),
            vec![PodName::from("c")]
        );
        assert_eq!(given.state.pod_state("c"), Some(&PodState::Retiring));
        assert_eq!(given.state.counts().warm, 2);
        given = given.warm("d", 3).waiting(&["s"]);
        assert!(given.state.trim_surplus(&config(2, 10, 4)).is_empty());
    }

    #[test]
    fn idle_candidates_carry_the_latest_evidence_of_use() {
        let mut given = Given::new().assigned("s", "p").waiting(&["w"]);
        let candidates = given.state.idle_candidates();
        assert_eq!(candidates.len(), 1, "only sessions with a pod: {candidates:?}");
        assert_eq!(candidates[0].evidence, given.now, "the assignment");
        let later = given.now + Duration::from_secs(9);
        given.state.record_activity("s", Some(later));
        assert_eq!(given.state.idle_candidates()[0].evidence, later);
    }

    #[test]
    fn resync_adopts_unknown_pods_and_drops_vanished_ones() {
        let mut state = Given::new().warm("vanished", 0).starting("creating").state;
        let listed = vec![record("adopted").ready().node("n1")];
        state.resync(&listed, Instant::now(), START);
        assert!(state.pod_state("vanished").is_none());
        assert_eq!(
            state.pod_state("creating"),
            Some(&PodState::Starting),
            "a pod being created is kept"
        );
        assert!(matches!(state.pod_state("adopted"), Some(PodState::Warm { .. })));
        assert_eq!(state.counts().warm, 1);
    }

    #[test]
    fn resync_adopts_sessions_from_labels_keeping_their_age() {
        let now = Instant::now() + Duration::from_secs(100);
        let mut state = State::default();
        let outcome = state.resync(
            &[record("p1").ready().session("s1").age(Duration::from_secs(30))],
            now,
            START,
        );
        assert_eq!(outcome.adopted, [SessionId::from("s1")]);
        assert_eq!(
            state.lookup("s1"),
            Lookup::Live(SessionView {
                state: SessionState::Active,
                pod: Some(("p1".into(), None)),
                source: Some(ProvisionSource::Warm),
                replacements: 0,
                last_kill: None,
            })
        );
        let expired = state.expired_sessions(Duration::from_secs(30), now);
        assert_eq!(expired, [SessionId::from("s1")], "its age is kept");
        assert!(state.expired_sessions(Duration::from_secs(31), now).is_empty());
        assert_eq!(state.counts().assigned, 1);
        // Adopted once only.
        assert_eq!(
            state.resync(&[record("p1").ready().session("s1")], now, START),
            Resync::default()
        );
    }

    #[test]
    fn resync_gives_a_waiting_session_the_pod_labelled_for_it() {
        // A session that had a pod and lost it (so its next pod is a replacement).
        let mut given = Given::new().assigned("s1", "old");
        given.state.forget_pod("old");
        given = given.warm("p1", 0);
        let outcome = given
            .state
            .resync(&[record("p1").ready().session("s1")], given.now, START);
        assert!(outcome.terminate.is_empty() && outcome.adopted.is_empty());
        assert_eq!(given.view("s1").pod.map(|(pod, _)| pod), Some("p1".into()));
        assert_eq!(given.view("s1").replacements, 1);
        assert!(given.state.next_match().is_none(), "nobody waits any more");
    }

    #[test]
    fn a_session_with_two_pods_keeps_the_first_name_on_every_replica() {
        for (ours, theirs) in [("p1", "p2"), ("p2", "p1")] {
            let mut given = Given::new().assigned("s1", ours);
            let listed = [
                record(ours).ready().session("s1"),
                record(theirs).ready().session("s1"),
            ];
            let outcome = given.state.resync(&listed, given.now, START);
            assert_eq!(outcome.terminate, [PodName::from("p2")], "ours = {ours}");
            assert_eq!(given.view("s1").pod.map(|(pod, _)| pod), Some("p1".into()));
            assert_eq!(given.state.pod_state("p2"), Some(&PodState::Terminating));
        }
    }

    #[test]
    fn pods_of_ended_sessions_are_terminated_and_claims_in_flight_left_alone() {
        let mut given = Given::new().waiting(&["s1"]);
        given.state.end_session("s1", given.now);
        let outcome = given
            .state
            .resync(&[record("p1").ready().session("s1")], given.now, START);
        assert_eq!(outcome.terminate, [PodName::from("p1")]);
        assert_eq!(given.state.lookup("s1"), Lookup::Ended { replacements: 0 });

        let mut given = Given::new().waiting(&["s2"]).warm("p2", 0);
        let m = given.state.next_match().unwrap();
        assert_eq!((m.session.as_str(), m.pod.as_str()), ("s2", "p2"));
        // The list already shows our claim while it is in flight: nothing to do yet.
        assert_eq!(
            given
                .state
                .resync(&[record("p2").ready().session("s2")], given.now, START),
            Resync::default()
        );
        assert_eq!(given.view("s2").pod, None);
    }

    #[test]
    fn a_lagging_list_never_undoes_our_own_assignment() {
        let mut given = Given::new().assigned("s1", "p1");
        // Listed unlabelled, or with a session it served before: our view stands.
        for listed in [record("p1").ready(), record("p1").ready().session("s0")] {
            assert_eq!(given.state.resync(&[listed], given.now, START), Resync::default());
            assert_eq!(given.view("s1").pod.map(|(pod, _)| pod), Some("p1".into()));
        }
        assert_eq!(given.state.lookup("s0"), Lookup::Unknown, "not adopted");
    }

    #[test]
    fn terminations_that_did_not_take_are_asked_again() {
        let mut given = Given::new()
            .assigned("s", "ended")
            .warm("kept", 0)
            .warm("surplus", 2);
        assert_eq!(
            given.state.end_session("s", given.now),
            EndOutcome::Ended {
                pods: vec!["ended".into()]
            }
        );
        assert_eq!(
            given.state.trim_surplus(&config(1, 10, 4)),
            vec![PodName::from("surplus")]
        );
        let listed = [
            record("ended").ready(),
            record("surplus").ready(),
            record("kept").ready(),
        ];
        let outcome = given.state.resync(&listed, given.now, START);
        assert_eq!(outcome.terminate, [PodName::from("ended")]);
        assert_eq!(outcome.retire, [PodName::from("surplus")]);
        // Once the backend lists them no more, they are gone.
        assert_eq!(
            given.state.resync(&[record("kept").ready()], given.now, START),
            Resync::default()
        );
        assert_eq!(
            given.state.counts(),
            Counts {
                warm: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_session_another_provisioner_ended_ends_here_and_is_never_replaced() {
        // We adopted s1 from its pod's labels; the other replica ends it and records that on the pod.
        let mut given = Given::new();
        given
            .state
            .resync(&[record("p1").ready().session("s1")], given.now, START);
        assert!(matches!(given.state.lookup("s1"), Lookup::Live(_)));
        let outcome = given
            .state
            .resync(&[record("p1").ready().session("s1").ended()], given.now, START);
        assert_eq!(outcome.ended, [SessionId::from("s1")]);
        assert_eq!(outcome.terminate, [PodName::from("p1")]);
        assert_eq!(given.state.lookup("s1"), Lookup::Ended { replacements: 0 });
        // Once the pod is gone the session is not orphaned, and nobody waits for a replacement.
        let outcome = given.state.resync(&[], given.now, START);
        assert!(outcome.orphaned.is_empty(), "{outcome:?}");
        assert_eq!(given.state.pods_to_create(&config(0, 10, 4)), 0);
        // The same through the watch event.
        let mut given = Given::new().assigned("s2", "p2");
        assert_eq!(
            given
                .state
                .ended_elsewhere_event(&"p2".into(), &"s2".into(), given.now),
            EndOutcome::Ended {
                pods: vec!["p2".into()]
            }
        );
        assert_eq!(given.state.forget_pod("p2"), PodGone::Free);
    }

    #[test]
    fn a_pod_that_never_gets_ready_expires_whoever_created_it() {
        let mut state = State::default();
        let young = record("young").created(START - Duration::from_secs(1));
        let old = record("old").created(START);
        let outcome = state.resync(&[young.clone(), old.clone()], Instant::now(), START);
        assert_eq!(outcome.terminate, [PodName::from("old")]);
        assert_eq!(state.pod_state("young"), Some(&PodState::Starting));
        // Asked once, then left to its termination.
        assert_eq!(
            state.resync(&[young, old], Instant::now(), START).terminate,
            [PodName::from("old")]
        );
    }

    #[test]
    fn warm_pods_of_an_older_template_are_replaced_assigned_ones_kept() {
        let now = Instant::now();
        let mut state = State::default();
        let listed = [
            record("warm-old").ready().outdated(),
            record("busy-old").ready().session("s1").outdated(),
        ];
        let outcome = state.resync(&listed, now, START);
        assert_eq!(outcome.retire, [PodName::from("warm-old")]);
        assert_eq!(outcome.adopted, [SessionId::from("s1")]);
        assert_eq!(state.pod_state("warm-old"), Some(&PodState::Retiring));
        assert!(matches!(
            state.pod_state("busy-old"),
            Some(PodState::Assigned { .. })
        ));
        // The pool now wants a fresh warm pod.
        assert_eq!(state.pods_to_create(&config(1, 10, 4)), 1);
    }
}
