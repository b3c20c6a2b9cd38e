//! The pool's bookkeeping: every pod and session the provisioner knows, and the pure decisions made from them
//! (how many pods to start, which pod goes to which session, what to trim). No I/O and no clocks of its own:
//! callers pass `now`, so every rule is unit-testable.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use common::api::{ProvisionSource, SessionState};
use tokio::sync::oneshot;

use super::PoolConfig;
use crate::backend::{PodPhase, PodRecord};

/// How long ended sessions are remembered, so their owner can still read `state: ended`.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);
/// Most ended sessions remembered at once (bounds memory whatever the churn).
const MAX_TOMBSTONES: usize = 1024;

/// Phase of a pod in the pool's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, not ready yet.
    Starting,
    /// Ready: warm if unassigned.
    Ready,
    /// Termination requested; still counted until its exit is seen.
    Terminating,
}

/// A pod the pool knows about.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Lifecycle phase.
    pub phase: Phase,
    /// The session it serves (or is being claimed for).
    pub session: Option<String>,
    /// Set while a claim for [`Pod::session`] is in flight with the backend.
    pub claiming: bool,
    /// Terminating as surplus: only while still unclaimed (see `Backend::retire`).
    pub retiring: bool,
    /// Node it runs on, when known.
    pub node: Option<String>,
    /// When it became ready, if it did.
    pub ready_at: Option<Instant>,
}

/// A live session.
#[derive(Debug)]
pub struct Session {
    /// Its pod, once assigned.
    pub pod: Option<String>,
    /// When it was created.
    pub created_at: Instant,
    /// When its current pod was assigned.
    pub assigned_at: Option<Instant>,
    /// How many replacement pods it received.
    pub replacements: u32,
    /// When it was last killed on purpose.
    pub last_kill: Option<Instant>,
    /// The latest WebSocket activity its pod reported (kept for when the pod cannot be asked).
    pub active_at: Option<Instant>,
    /// Whether its first pod came warm or cold (set on first assignment).
    pub source: Option<ProvisionSource>,
    /// Woken when the session gets a pod (only while `POST /session` waits).
    pub waiter: Option<oneshot::Sender<()>>,
}

/// An ended session, remembered for a while.
#[derive(Debug)]
pub struct Tombstone {
    /// How many replacements it had.
    pub replacements: u32,
    /// When it ended.
    pub ended_at: Instant,
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

/// What a [`State::resync`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resync {
    /// Sessions that lost their pod (they now wait for a replacement).
    pub orphaned: Vec<String>,
    /// Sessions learned from pod labels.
    pub adopted: Vec<String>,
    /// Pods to terminate (labelled for an ended session, a session's second pod, or a termination that did
    /// not take).
    pub terminate: Vec<String>,
    /// Surplus pods whose trimming did not take: trim again, if still unclaimed.
    pub retire: Vec<String>,
}

/// Everything the pool knows.
#[derive(Debug, Default)]
pub struct State {
    /// Pods by name.
    pub pods: HashMap<String, Pod>,
    /// Live sessions by id.
    pub sessions: HashMap<String, Session>,
    /// Sessions waiting for a pod, served first come first served (replacements go to the front).
    pub waiting: VecDeque<String>,
    /// Ended sessions by id.
    pub ended: HashMap<String, Tombstone>,
}

impl State {
    /// Counts pods by what they are doing.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for pod in self.pods.values() {
            match (pod.phase, &pod.session) {
                (Phase::Terminating, _) => counts.terminating += 1,
                (_, Some(_)) => counts.assigned += 1,
                (Phase::Starting, None) => counts.starting += 1,
                (Phase::Ready, None) => counts.warm += 1,
            }
        }
        counts
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
    pub fn add_starting(&mut self, name: String) {
        self.pods.insert(
            name,
            Pod {
                phase: Phase::Starting,
                session: None,
                claiming: false,
                retiring: false,
                node: None,
                ready_at: None,
            },
        );
    }

    /// The pod passed its readiness check.
    pub fn mark_ready(&mut self, name: &str, node: Option<String>, now: Instant) {
        if let Some(pod) = self.pods.get_mut(name)
            && pod.phase == Phase::Starting
        {
            pod.phase = Phase::Ready;
            pod.ready_at = Some(now);
            if node.is_some() {
                pod.node = node;
            }
        }
    }

    /// The pod is gone. If it served a live session, that session now waits for a replacement (at the front of
    /// the queue). Returns the session that lost its pod, if any.
    pub fn remove_pod(&mut self, name: &str) -> Option<String> {
        let pod = self.pods.remove(name)?;
        let session_id = pod.session?;
        let session = self.sessions.get_mut(&session_id)?;
        if session.pod.as_deref() == Some(name) {
            session.pod = None;
            session.assigned_at = None;
            if !self.waiting.contains(&session_id) {
                self.waiting.push_front(session_id.clone());
            }
            return Some(session_id);
        }
        None
    }

    /// Takes the next (waiting session, warm pod) pair and marks the pod as being claimed. The oldest warm pod
    /// goes first. Returns `None` when nobody waits or no pod is warm.
    pub fn next_match(&mut self) -> Option<(String, String)> {
        let pod_name = self
            .pods
            .iter()
            .filter(|(_, pod)| pod.phase == Phase::Ready && pod.session.is_none())
            .min_by_key(|(name, pod)| (pod.ready_at, (*name).clone()))
            .map(|(name, _)| name.clone())?;
        let session_id = loop {
            let candidate = self.waiting.pop_front()?;
            if self.sessions.get(&candidate).is_some_and(|s| s.pod.is_none()) {
                break candidate;
            }
        };
        if let Some(pod) = self.pods.get_mut(&pod_name) {
            pod.session = Some(session_id.clone());
            pod.claiming = true;
        }
        Some((session_id, pod_name))
    }

    /// The backend confirmed a claim: the session has its pod. Returns false if the session ended meanwhile
    /// (the caller then terminates the pod).
    pub fn complete_claim(&mut self, session_id: &str, pod_name: &str, now: Instant) -> bool {
        let ready_at = match self.pods.get_mut(pod_name) {
            Some(pod) => {
                pod.claiming = false;
                pod.ready_at
            }
            None => return false,
        };
        let Some(session) = self.sessions.get_mut(session_id) else {
            return false;
        };
        session.pod = Some(pod_name.to_owned());
        session.assigned_at = Some(now);
        match session.source {
            // A replacement.
            Some(_) => session.replacements += 1,
            None => {
                let warm = ready_at.is_some_and(|ready| ready <= session.created_at);
                session.source = Some(if warm {
                    ProvisionSource::Warm
                } else {
                    ProvisionSource::Cold
                });
            }
        }
        if let Some(waiter) = session.waiter.take() {
            let _ = waiter.send(());
        }
        true
    }

    /// The backend refused a claim. On conflict the pod belongs to someone else: forget it (the next resync
    /// shows its real state). Either way the session waits again, at the front.
    pub fn fail_claim(&mut self, session_id: &str, pod_name: &str, conflict: bool) {
        if conflict {
            self.pods.remove(pod_name);
        } else if let Some(pod) = self.pods.get_mut(pod_name) {
            pod.session = None;
            pod.claiming = false;
        }
        if self.sessions.get(session_id).is_some_and(|s| s.pod.is_none()) {
            self.waiting.push_front(session_id.to_owned());
        }
    }

    /// Marks a surplus warm pod as terminating, to be trimmed only while unclaimed.
    pub fn start_retiring(&mut self, name: &str) {
        if self.start_terminating(name)
            && let Some(pod) = self.pods.get_mut(name)
        {
            pod.retiring = true;
        }
    }

    /// Marks a pod as terminating and detaches it from its session. Returns whether it was known.
    pub fn start_terminating(&mut self, name: &str) -> bool {
        match self.pods.get_mut(name) {
            Some(pod) => {
                pod.phase = Phase::Terminating;
                pod.session = None;
                pod.claiming = false;
                true
            }
            None => false,
        }
    }

    /// Ends a live session: it becomes a tombstone and its pod (returned) must be terminated.
    pub fn end_session(&mut self, session_id: &str, now: Instant) -> Option<Option<String>> {
        let session = self.sessions.remove(session_id)?;
        self.waiting.retain(|id| id != session_id);
        let pod = session.pod.clone();
        // A pod being claimed for it right now is also released to termination.
        let claimed: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.session.as_deref() == Some(session_id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &claimed {
            self.start_terminating(name);
        }
        self.ended.insert(
            session_id.to_owned(),
            Tombstone {
                replacements: session.replacements,
                ended_at: now,
            },
        );
        self.prune_tombstones(now);
        Some(pod.or_else(|| claimed.into_iter().next()))
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

    /// Warm pods beyond the target while nobody waits: the newest ones are trimmed first.
    pub fn surplus_warm(&self, config: &PoolConfig) -> Vec<String> {
        if !self.waiting.is_empty() {
            return Vec::new();
        }
        let mut warm: Vec<(&String, &Pod)> = self
            .pods
            .iter()
            .filter(|(_, pod)| pod.phase == Phase::Ready && pod.session.is_none())
            .collect();
        let surplus = warm.len().saturating_sub(config.warm_target as usize);
        warm.sort_by_key(|(name, pod)| (std::cmp::Reverse(pod.ready_at), (*name).clone()));
        warm.into_iter()
            .take(surplus)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Live sessions older than `max_age`.
    pub fn expired_sessions(&self, max_age: Duration, now: Instant) -> Vec<String> {
        self.sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.created_at) >= max_age)
            .map(|(id, _)| id.clone())
            .collect()
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
    /// - a warm pod of an older template (the deployment was upgraded) is trimmed, to be replaced.
    pub fn resync(&mut self, listed: &[PodRecord], now: Instant) -> Resync {
        let mut outcome = Resync::default();
        let gone: Vec<String> = self
            .pods
            .iter()
            // A pod this pool is creating may not be listed yet; it reports itself with events.
            .filter(|(name, pod)| pod.phase != Phase::Starting && !listed.iter().any(|r| &r.name == *name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            outcome.orphaned.extend(self.remove_pod(&name));
        }
        for record in listed {
            match self.pods.get_mut(&record.name) {
                Some(pod) => {
                    // Still there after we asked for its end (a failed call, or a provisioner killed midway):
                    // ask again. Backends list a pod as gone as soon as its termination is under way.
                    if pod.phase == Phase::Terminating {
                        if pod.retiring {
                            outcome.retire.push(record.name.clone());
                        } else {
                            outcome.terminate.push(record.name.clone());
                        }
                        continue;
                    }
                    if pod.phase == Phase::Starting && record.phase == PodPhase::Ready {
                        pod.phase = Phase::Ready;
                        pod.ready_at = Some(now);
                        pod.node = record.node.clone();
                    }
                    // Claimed elsewhere. (The reverse — labelled here, unlabelled in the list — is a list that
                    // lags behind a claim of ours, and is ignored.)
                    if pod.phase != Phase::Terminating && !pod.claiming && pod.session.is_none() {
                        pod.session = record.session.clone();
                    }
                }
                None => {
                    self.pods.insert(
                        record.name.clone(),
                        Pod {
                            phase: match record.phase {
                                PodPhase::Starting => Phase::Starting,
                                PodPhase::Ready => Phase::Ready,
                            },
                            session: record.session.clone(),
                            claiming: false,
                            retiring: false,
                            node: record.node.clone(),
                            ready_at: (record.phase == PodPhase::Ready).then_some(now),
                        },
                    );
                }
            }
            if let Some(session_id) = &record.session {
                self.reconcile_label(&record.name, session_id, record.session_age, now, &mut outcome);
            } else if record.outdated
                && self
                    .pods
                    .get(&record.name)
                    .is_some_and(|p| p.phase == Phase::Ready && p.session.is_none() && !p.claiming)
            {
                // A warm pod of an older template (an upgrade): replace it. Assigned ones finish their session.
                self.start_retiring(&record.name);
                outcome.retire.push(record.name.clone());
            }
        }
        outcome
    }

    /// One pod labelled for `session_id`: see [`State::resync`].
    fn reconcile_label(
        &mut self,
        pod_name: &str,
        session_id: &str,
        age: Option<Duration>,
        now: Instant,
        outcome: &mut Resync,
    ) {
        if self
            .pods
            .get(pod_name)
            .is_none_or(|p| p.claiming || p.phase == Phase::Terminating)
        {
            return;
        }
        if self.ended.contains_key(session_id) {
            self.start_terminating(pod_name);
            outcome.terminate.push(pod_name.to_owned());
            return;
        }
        let Some(session) = self.sessions.get_mut(session_id) else {
            self.sessions.insert(
                session_id.to_owned(),
                Session {
                    pod: Some(pod_name.to_owned()),
                    created_at: age.and_then(|age| now.checked_sub(age)).unwrap_or(now),
                    assigned_at: Some(now),
                    replacements: 0,
                    last_kill: None,
                    active_at: None,
                    source: Some(ProvisionSource::Warm),
                    waiter: None,
                },
            );
            outcome.adopted.push(session_id.to_owned());
            return;
        };
        match session.pod.clone() {
            Some(current) if current == pod_name => {}
            None => {
                session.pod = Some(pod_name.to_owned());
                session.assigned_at = Some(now);
                if session.source.is_some() {
                    session.replacements += 1;
                } else {
                    session.source = Some(ProvisionSource::Warm);
                }
                if let Some(waiter) = session.waiter.take() {
                    let _ = waiter.send(());
                }
                self.waiting.retain(|id| id != session_id);
            }
            Some(current) => {
                let loser = if pod_name < current.as_str() {
                    session.pod = Some(pod_name.to_owned());
                    current
                } else {
                    pod_name.to_owned()
                };
                self.start_terminating(&loser);
                outcome.terminate.push(loser);
            }
        }
    }

    /// The API's view of a live session.
    pub fn session_state(session: &Session) -> SessionState {
        if session.pod.is_some() {
            SessionState::Active
        } else {
            SessionState::Replacing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(warm: u32, max_sessions: u32, max_starting: u32) -> PoolConfig {
        PoolConfig {
            warm_target: warm,
            max_sessions,
            max_starting,
            ..PoolConfig::default()
        }
    }

    fn session(now: Instant) -> Session {
        Session {
            pod: None,
            created_at: now,
            assigned_at: None,
            replacements: 0,
            last_kill: None,
            active_at: None,
            source: None,
            waiter: None,
        }
    }

    fn ready_pod(state: &mut State, name: &str, now: Instant) {
        state.add_starting(name.into());
        state.mark_ready(name, None, now);
    }

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
        let now = Instant::now();
        let mut state = State::default();
        for i in 0..5 {
            state.sessions.insert(format!("s{i}"), session(now));
            state.waiting.push_back(format!("s{i}"));
        }
        assert_eq!(state.pods_to_create(&config(2, 10, 3)), 3, "starting cap");
        assert_eq!(state.pods_to_create(&config(2, 10, 100)), 7);
    }

    #[test]
    fn total_cap_is_never_exceeded() {
        let now = Instant::now();
        let mut state = State::default();
        let c = config(2, 3, 100);
        for i in 0..10 {
            state.sessions.insert(format!("s{i}"), session(now));
            state.waiting.push_back(format!("s{i}"));
        }
        assert_eq!(state.pods_to_create(&c), 5);
        for i in 0..5 {
            state.add_starting(format!("p{i}"));
        }
        // Terminating pods still count.
        state.start_terminating("p0");
        assert_eq!(state.counts().total(), 5);
        assert_eq!(state.pods_to_create(&c), 0);
    }

    #[test]
    fn matches_oldest_warm_pod_to_first_waiting_session() {
        let now = Instant::now();
        let mut state = State::default();
        ready_pod(&mut state, "young", now + Duration::from_secs(2));
        ready_pod(&mut state, "old", now + Duration::from_secs(1));
        state.add_starting("cold".into());
        state.sessions.insert("s1".into(), session(now));
        state.sessions.insert("s2".into(), session(now));
        state.waiting.extend(["s1".to_owned(), "s2".to_owned()]);
        assert_eq!(state.next_match(), Some(("s1".into(), "old".into())));
        assert_eq!(state.next_match(), Some(("s2".into(), "young".into())));
        assert_eq!(state.next_match(), None, "starting pods are never handed out");
        assert_eq!(state.counts().assigned, 2);
    }

    #[test]
    fn claim_completion_sets_source_and_counts_replacements() {
        let now = Instant::now();
        let mut state = State::default();
        ready_pod(&mut state, "warm", now);
        state
            .sessions
            .insert("s".into(), session(now + Duration::from_millis(1)));
        state.waiting.push_back("s".into());
        let (s, p) = state.next_match().unwrap();
        assert!(state.complete_claim(&s, &p, now));
        assert_eq!(state.sessions["s"].source, Some(ProvisionSource::Warm));
        assert_eq!(state.sessions["s"].replacements, 0);

        // The pod dies: the session waits at the front and the next pod is a replacement.
        assert_eq!(state.remove_pod("warm"), Some("s".into()));
        assert_eq!(
            State::session_state(&state.sessions["s"]),
            SessionState::Replacing
        );
        ready_pod(&mut state, "next", now + Duration::from_secs(5));
        let (s, p) = state.next_match().unwrap();
        assert!(state.complete_claim(&s, &p, now));
        assert_eq!(state.sessions["s"].replacements, 1);
        assert_eq!(
            state.sessions["s"].source,
            Some(ProvisionSource::Warm),
            "source is the first pod's"
        );
    }

    #[test]
    fn pod_ready_after_session_creation_is_cold() {
        let now = Instant::now();
        let mut state = State::default();
        state.sessions.insert("s".into(), session(now));
        state.waiting.push_back("s".into());
        ready_pod(&mut state, "p", now + Duration::from_millis(300));
        let (s, p) = state.next_match().unwrap();
        state.complete_claim(&s, &p, now);
        assert_eq!(state.sessions["s"].source, Some(ProvisionSource::Cold));
    }

    #[test]
    fn conflict_forgets_the_pod_and_requeues_the_session() {
        let now = Instant::now();
        let mut state = State::default();
        ready_pod(&mut state, "p", now);
        state.sessions.insert("s".into(), session(now));
        state.waiting.push_back("s".into());
        let (s, p) = state.next_match().unwrap();
        state.fail_claim(&s, &p, true);
        assert!(!state.pods.contains_key("p"));
        assert_eq!(state.waiting.front().map(String::as_str), Some("s"));
    }

    #[test]
    fn ending_a_session_terminates_its_pod_and_leaves_a_tombstone() {
        let now = Instant::now();
        let mut state = State::default();
        ready_pod(&mut state, "p", now);
        state.sessions.insert("s".into(), session(now));
        state.waiting.push_back("s".into());
        let (s, p) = state.next_match().unwrap();
        state.complete_claim(&s, &p, now);
        assert_eq!(state.end_session("s", now), Some(Some("p".into())));
        assert_eq!(state.counts().terminating, 1);
        assert!(state.ended.contains_key("s"));
        assert_eq!(state.end_session("s", now), None);
        state.prune_tombstones(now + TOMBSTONE_TTL);
        assert!(state.ended.is_empty());
    }

    #[test]
    fn surplus_warm_pods_are_trimmed_only_when_nobody_waits() {
        let now = Instant::now();
        let mut state = State::default();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            ready_pod(&mut state, name, now + Duration::from_secs(i as u64));
        }
        assert_eq!(state.surplus_warm(&config(2, 10, 4)), vec!["c".to_owned()]);
        state.sessions.insert("s".into(), session(now));
        state.waiting.push_back("s".into());
        assert!(state.surplus_warm(&config(2, 10, 4)).is_empty());
    }

    #[test]
    fn resync_adopts_unknown_pods_and_drops_vanished_ones() {
        let now = Instant::now();
        let mut state = State::default();
        ready_pod(&mut state, "vanished", now);
        state.add_starting("creating".into());
        let listed = vec![PodRecord {
            name: "adopted".into(),
            phase: PodPhase::Ready,
            session: None,
            session_age: None,
            node: Some("n1".into()),
            outdated: false,
        }];
        state.resync(&listed, now);
        assert!(!state.pods.contains_key("vanished"));
        assert!(state.pods.contains_key("creating"), "a pod being created is kept");
        assert_eq!(state.pods["adopted"].phase, Phase::Ready);
        assert_eq!(state.counts().warm, 1);
    }

    fn labelled(name: &str, session: &str, age: Option<Duration>) -> PodRecord {
        PodRecord {
            name: name.into(),
            phase: PodPhase::Ready,
            session: Some(session.into()),
            session_age: age,
            node: None,
            outdated: false,
        }
    }

    #[test]
    fn resync_adopts_sessions_from_labels_keeping_their_age() {
        let now = Instant::now() + Duration::from_secs(100);
        let mut state = State::default();
        let outcome = state.resync(&[labelled("p1", "s1", Some(Duration::from_secs(30)))], now);
        assert_eq!(outcome.adopted, ["s1"]);
        let session = &state.sessions["s1"];
        assert_eq!(session.pod.as_deref(), Some("p1"));
        assert_eq!(now - session.created_at, Duration::from_secs(30));
        assert_eq!(state.counts().assigned, 1);
        // Adopted once only.
        assert_eq!(
            state.resync(&[labelled("p1", "s1", None)], now),
            Resync::default()
        );
    }

    #[test]
    fn resync_gives_a_waiting_session_the_pod_labelled_for_it() {
        let now = Instant::now();
        let mut state = State::default();
        let mut s = session(now);
        s.source = Some(ProvisionSource::Warm);
        state.sessions.insert("s1".into(), s);
        state.waiting.push_back("s1".into());
        ready_pod(&mut state, "p1", now);
        let outcome = state.resync(&[labelled("p1", "s1", None)], now);
        assert!(outcome.terminate.is_empty() && outcome.adopted.is_empty());
        assert_eq!(state.sessions["s1"].pod.as_deref(), Some("p1"));
        assert_eq!(state.sessions["s1"].replacements, 1);
        assert!(state.waiting.is_empty());
    }

    #[test]
    fn a_session_with_two_pods_keeps_the_first_name_on_every_replica() {
        let now = Instant::now();
        for (ours, theirs) in [("p1", "p2"), ("p2", "p1")] {
            let mut state = State::default();
            let mut s = session(now);
            s.pod = Some(ours.into());
            state.sessions.insert("s1".into(), s);
            state.pods.insert(
                ours.into(),
                Pod {
                    phase: Phase::Ready,
                    session: Some("s1".into()),
                    claiming: false,
                    retiring: false,
                    node: None,
                    ready_at: Some(now),
                },
            );
            let outcome = state.resync(&[labelled(ours, "s1", None), labelled(theirs, "s1", None)], now);
            assert_eq!(outcome.terminate, ["p2"], "ours = {ours}");
            assert_eq!(state.sessions["s1"].pod.as_deref(), Some("p1"));
            assert_eq!(state.pods["p2"].phase, Phase::Terminating);
        }
    }

    #[test]
    fn pods_of_ended_sessions_are_terminated_and_claims_in_flight_left_alone() {
        let now = Instant::now();
        let mut state = State::default();
        state.sessions.insert("s1".into(), session(now));
        state.end_session("s1", now);
        let outcome = state.resync(&[labelled("p1", "s1", None)], now);
        assert_eq!(outcome.terminate, ["p1"]);
        assert!(!state.sessions.contains_key("s1"));

        let mut state = State::default();
        state.sessions.insert("s2".into(), session(now));
        state.waiting.push_back("s2".into());
        ready_pod(&mut state, "p2", now);
        assert_eq!(state.next_match(), Some(("s2".into(), "p2".into())));
        // The list already shows our claim while it is in flight: nothing to do yet.
        assert_eq!(
            state.resync(&[labelled("p2", "s2", None)], now),
            Resync::default()
        );
        assert!(state.sessions["s2"].pod.is_none());
    }

    #[test]
    fn terminations_that_did_not_take_are_asked_again() {
        let now = Instant::now();
        let mut state = State::default();
        ready_pod(&mut state, "killed", now);
        ready_pod(&mut state, "surplus", now);
        state.start_terminating("killed");
        state.start_retiring("surplus");
        let listed: Vec<PodRecord> = ["killed", "surplus"]
            .iter()
            .map(|name| PodRecord {
                name: (*name).into(),
                phase: PodPhase::Ready,
                session: None,
                session_age: None,
                node: None,
                outdated: false,
            })
            .collect();
        let outcome = state.resync(&listed, now);
        assert_eq!(outcome.terminate, ["killed"]);
        assert_eq!(outcome.retire, ["surplus"]);
        // Once the backend lists them no more, they are gone.
        assert_eq!(state.resync(&[], now), Resync::default());
        assert!(state.pods.is_empty());
    }

    #[test]
    fn warm_pods_of_an_older_template_are_replaced_assigned_ones_kept() {
        let now = Instant::now();
        let mut state = State::default();
        let old = |name: &str, session: Option<&str>| PodRecord {
            name: name.into(),
            phase: PodPhase::Ready,
            session: session.map(Into::into),
            session_age: None,
            node: None,
            outdated: true,
        };
        let outcome = state.resync(&[old("warm-old", None), old("busy-old", Some("s1"))], now);
        assert_eq!(outcome.retire, ["warm-old"]);
        assert_eq!(outcome.adopted, ["s1"]);
        assert_eq!(state.pods["warm-old"].phase, Phase::Terminating);
        assert_eq!(state.pods["busy-old"].phase, Phase::Ready);
        // The pool now wants a fresh warm pod.
        assert_eq!(state.pods_to_create(&config(1, 10, 4)), 1);
    }
}
