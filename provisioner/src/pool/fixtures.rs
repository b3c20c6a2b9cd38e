//! Test fixtures for the pool's rules (controller-rs `fixtures.rs` style): [`Given`] builds a [`State`] through
//! the same public methods the pool uses, so a test says what the situation is ("a warm pod, two waiting
//! sessions") rather than how the bookkeeping stores it; [`record`] builds the backend's list entries.

use std::time::{Duration, Instant};

use common::client::ClientKey;
use common::ids::SessionId;
use tokio::sync::oneshot;

use super::PoolConfig;
use super::state::{AdmitRefused, ClaimOutcome, Lookup, SessionView, State};
use crate::backend::{PodPhase, PodRecord};

/// A pool configuration with these sizes and every other setting at its default.
pub fn config(warm_target: u32, max_sessions: u32, max_starting: u32) -> PoolConfig {
    PoolConfig {
        warm_target,
        max_sessions,
        max_starting,
        ..PoolConfig::default()
    }
}

/// A [`State`] under construction, with the clock every step of it uses.
pub struct Given {
    /// The state built so far.
    pub state: State,
    /// "Now": sessions are admitted and pods become ready at offsets from it.
    pub now: Instant,
    config: PoolConfig,
    /// Clients so far: each session admitted without one named gets a client of its own.
    clients: u32,
}

impl Default for Given {
    fn default() -> Self {
        Self::with(config(2, 100, 4))
    }
}

impl Given {
    /// An empty pool that admits up to 100 sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pool with this configuration.
    pub fn with(config: PoolConfig) -> Self {
        Self {
            state: State::default(),
            // An hour ahead of the real clock, so fixtures can place events before "now".
            now: Instant::now() + Duration::from_secs(3600),
            config,
            clients: 0,
        }
    }

    /// A pod that is starting.
    pub fn starting(mut self, pod: &str) -> Self {
        self.state.add_starting(pod.into());
        self
    }

    /// A warm pod, ready `secs` seconds after "now".
    pub fn warm(self, pod: &str, secs: u64) -> Self {
        self.warm_ms(pod, secs * 1000)
    }

    /// A warm pod, ready `ms` milliseconds after "now".
    pub fn warm_ms(mut self, pod: &str, ms: u64) -> Self {
        self.state.add_starting(pod.into());
        let at = self.now + Duration::from_millis(ms);
        self.state.mark_ready(pod, None, at);
        self
    }

    /// Sessions admitted "now", waiting for pods in this order.
    pub fn waiting(mut self, ids: &[&str]) -> Self {
        for id in ids {
            self.try_admit(id).expect("the fixture's pool admits the session");
        }
        self
    }

    /// A session admitted `ms` milliseconds after "now", waiting for a pod.
    pub fn waiting_at(mut self, id: &str, ms: u64) -> Self {
        let at = self.now + Duration::from_millis(ms);
        let (waiter, _) = oneshot::channel();
        let client = self.new_client();
        self.state
            .admit(SessionId::new(id), client, at, waiter, &self.config)
            .expect("the fixture's pool admits the session");
        self
    }

    /// A client no session has yet (10.0.x.y).
    fn new_client(&mut self) -> ClientKey {
        self.clients += 1;
        let [_, _, high, low] = self.clients.to_be_bytes();
        client([10, 0, high, low])
    }

    /// Admits session `id` "now" for a client of its own, or says why not.
    pub fn try_admit(&mut self, id: &str) -> Result<(), AdmitRefused> {
        let client = self.new_client();
        self.try_admit_for(id, client)
    }

    /// Admits session `id` "now" for `client`, or says why not.
    pub fn try_admit_for(&mut self, id: &str, client: ClientKey) -> Result<(), AdmitRefused> {
        let (waiter, _) = oneshot::channel();
        self.state
            .admit(SessionId::new(id), client, self.now, waiter, &self.config)
    }

    /// Session `id`, admitted "now" and served by `pod` (warm since before it was admitted). Call it before
    /// adding waiting sessions or older warm pods: it takes the first match.
    pub fn assigned(mut self, id: &str, pod: &str) -> Self {
        self.state.add_starting(pod.into());
        self.state
            .mark_ready(pod, None, self.now - Duration::from_secs(3600));
        self = self.waiting(&[id]);
        let m = self.state.next_match().expect("a match");
        assert_eq!(
            (m.session.as_str(), m.pod.as_str()),
            (id, pod),
            "assigned() must come before other waiting sessions and warm pods"
        );
        assert!(matches!(
            self.state.complete_claim(&m, self.now),
            ClaimOutcome::First(_)
        ));
        self
    }

    /// The view of live session `id` (panics if it is not live).
    pub fn view(&self, id: &str) -> SessionView {
        match self.state.lookup(id) {
            Lookup::Live(view) => view,
            other => panic!("session {id} is not live: {other:?}"),
        }
    }
}

/// The client at IPv4 address `ip`.
pub fn client(ip: [u8; 4]) -> ClientKey {
    ClientKey::new(std::net::IpAddr::from(ip), 64)
}

/// A listed pod: starting, unlabelled, of the current template. Refine it with [`RecordExt`].
pub fn record(name: &str) -> PodRecord {
    PodRecord {
        name: name.into(),
        phase: PodPhase::Starting,
        session: None,
        session_age: None,
        node: None,
        outdated: false,
        ended: false,
        age: None,
    }
}

/// Builder steps for a listed pod.
pub trait RecordExt {
    /// Ready.
    fn ready(self) -> Self;
    /// Labelled for `session`.
    fn session(self, session: &str) -> Self;
    /// Its session began `age` ago.
    fn age(self, age: Duration) -> Self;
    /// Runs on `node`.
    fn node(self, node: &str) -> Self;
    /// Made from an older template.
    fn outdated(self) -> Self;
    /// Its session ended (recorded on the pod by another provisioner).
    fn ended(self) -> Self;
    /// Created `age` ago.
    fn created(self, age: Duration) -> Self;
}

impl RecordExt for PodRecord {
    fn ready(mut self) -> Self {
        self.phase = PodPhase::Ready;
        self
    }

    fn session(mut self, session: &str) -> Self {
        self.session = Some(session.into());
        self
    }

    fn age(mut self, age: Duration) -> Self {
        self.session_age = Some(age);
        self
    }

    fn node(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }

    fn outdated(mut self) -> Self {
        self.outdated = true;
        self
    }

    fn ended(mut self) -> Self {
        self.ended = true;
        self
    }

    fn created(mut self, age: Duration) -> Self {
        self.age = Some(age);
        self
    }
}
