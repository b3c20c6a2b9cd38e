//! The pool algorithm against the in-memory fake backend: every invariant of the module docs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::backend::PodPhase;
use crate::backend::fake::FakeBackend;

/// Bound on every wait; reached only when something is broken.
const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    pool: Arc<Pool<FakeBackend>>,
    fake: FakeBackend,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    /// Clients handed out so far: each session comes from a client of its own unless a test says otherwise.
    clients: std::sync::atomic::AtomicU32,
}

impl Harness {
    fn start(config: PoolConfig) -> Self {
        Self::start_with(config, |_| {})
    }

    /// Starts the pool after `prepare` has set up the fake backend (so the first reconcile already sees it).
    fn start_with(config: PoolConfig, prepare: impl FnOnce(&FakeBackend)) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let fake = FakeBackend::new(tx);
        prepare(&fake);
        let metrics = Arc::new(Metrics::default());
        let pool = Pool::new(fake.clone(), config, metrics.clone());
        let shutdown = CancellationToken::new();
        tokio::spawn(pool.clone().run(rx, shutdown.clone()));
        Self {
            pool,
            fake,
            metrics,
            shutdown,
            clients: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// A client no session has come from yet.
    fn client(&self) -> ClientKey {
        let n = self.clients.fetch_add(1, Ordering::SeqCst) + 1;
        let [_, _, high, low] = n.to_be_bytes();
        crate::pool::fixtures::client([10, 1, high, low])
    }

    /// Waits until the published counts satisfy `condition`.
    async fn until(&self, what: &str, condition: impl FnMut(&state::Counts) -> bool) -> state::Counts {
        let mut counts = self.pool.watch_counts();
        match tokio::time::timeout(WAIT, counts.wait_for(condition)).await {
            Ok(Ok(counts)) => *counts,
            _ => panic!(
                "timed out waiting for {what}; counts are {:?}",
                self.pool.counts()
            ),
        }
    }

    /// Waits until session `id` is in `state` with a pod other than `not`.
    async fn until_session(
        &self,
        id: &SessionId,
        wanted: SessionState,
        not: Option<&PodName>,
    ) -> SessionStatus {
        let mut counts = self.pool.watch_counts();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = self.pool.session(id).unwrap();
            let other_pod = status.pod.as_ref().map(|p| &p.name) != not;
            if status.state == wanted && (wanted != SessionState::Active || other_pod) {
                return status;
            }
            if tokio::time::timeout_at(deadline, counts.changed()).await.is_err() {
                panic!("session never reached {wanted:?}: {status:?}");
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config(warm: u32, max_sessions: u32) -> PoolConfig {
    PoolConfig {
        warm_target: warm,
        max_sessions,
        max_starting: 4,
        cold_start_timeout: Duration::from_secs(5),
        resync_interval: Duration::from_secs(3600),
        kill_cooldown: Duration::from_secs(5),
        ..PoolConfig::default()
    }
}

#[tokio::test]
async fn fills_to_the_warm_target_and_stops() {
    let h = Harness::start(config(3, 10));
    let counts = h.until("3 warm pods", |c| c.warm == 3).await;
    assert_eq!(counts.total(), 3);
    assert_eq!(h.fake.max_pods.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn warm_session_is_served_from_the_pool_and_the_pool_refills() {
    let h = Harness::start(config(2, 10));
    h.until("warm pool", |c| c.warm == 2).await;
    let created = h.pool.create_session(h.client()).await.unwrap();
    assert_eq!(created.source, ProvisionSource::Warm);
    assert!(h.fake.exists(created.pod.name.as_str()));
    assert_eq!(
        created.websocket_url,
        format!("ws://fake/{}/ws", created.pod.name)
    );
    assert_eq!(
        created.pod.display_name,
        common::names::display_name(created.pod.name.as_str())
    );
    h.until("refilled pool", |c| c.warm == 2 && c.assigned == 1).await;
}

#[tokio::test]
async fn empty_pool_takes_the_cold_path() {
    let h = Harness::start(config(0, 10));
    let created = h.pool.create_session(h.client()).await.unwrap();
    assert_eq!(created.source, ProvisionSource::Cold);
    h.until("one assigned pod and no warm", |c| c.assigned == 1 && c.warm == 0)
        .await;
}

#[tokio::test]
async fn cold_start_timeout_gives_the_slot_back() {
    let mut c = config(0, 1);
    c.cold_start_timeout = Duration::from_millis(100);
    let h = Harness::start(c);
    h.fake.auto_ready.store(false, Ordering::SeqCst);
    assert!(matches!(
        h.pool.create_session(h.client()).await,
        Err(PoolError::ColdStartTimeout(_))
    ));
    // The slot is free again: once pods start, a session fits.
    h.fake.auto_ready.store(true, Ordering::SeqCst);
    for name in h.fake.names(PodPhase::Starting) {
        h.fake.make_ready(name.as_str());
    }
    assert!(h.pool.create_session(h.client()).await.is_ok());
}

#[tokio::test]
async fn session_cap_is_enforced_and_pods_never_exceed_the_total_cap() {
    let h = Harness::start(config(2, 3));
    h.until("warm pool", |c| c.warm == 2).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(h.pool.create_session(h.client()).await.unwrap());
    }
    assert!(matches!(
        h.pool.create_session(h.client()).await,
        Err(PoolError::AtCapacity(3))
    ));
    h.until("refilled pool", |c| c.warm == 2 && c.assigned == 3).await;
    assert!(h.fake.max_pods.load(Ordering::SeqCst) <= 5);
}

#[tokio::test]
async fn concurrent_requests_never_share_a_pod_or_break_the_cap() {
    let h = Harness::start(config(2, 10));
    h.until("warm pool", |c| c.warm == 2).await;
    let results = futures_util::future::join_all((0..30).map(|_| h.pool.create_session(h.client()))).await;
    let ok: Vec<&Created> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let capped = results
        .iter()
        .filter(|r| matches!(r, Err(PoolError::AtCapacity(_))))
        .count();
    assert_eq!((ok.len(), capped), (10, 20));
    let mut pods: Vec<&str> = ok.iter().map(|c| c.pod.name.as_str()).collect();
    pods.sort_unstable();
    pods.dedup();
    assert_eq!(pods.len(), 10, "a pod was handed to two sessions");
    assert!(h.fake.max_pods.load(Ordering::SeqCst) <= 12);
}

#[tokio::test]
async fn kill_replaces_the_pod_from_the_warm_pool_and_cools_down() {
    let h = Harness::start(config(2, 10));
    h.until("warm pool", |c| c.warm == 2).await;
    let created = h.pool.create_session(h.client()).await.unwrap();
    let answer = h.pool.kill(&created.session_id).await.unwrap();
    let killed = answer.killed;
    assert_eq!(killed, created.pod.name);
    assert!(
        !h.fake.exists(killed.as_str()),
        "the pod must really be terminated"
    );
    // A warm pod was there: the answer already names the replacement, with the provisioner's timings.
    let replacement = answer.replacement.expect("a replacement from the warm pool");
    assert_ne!(replacement.name, killed);
    assert!(answer.websocket_url.is_some());
    let (assigned, answered) = (
        answer.timings.replacement_assigned_ms.unwrap(),
        answer.timings.answered_ms.unwrap(),
    );
    assert!(0.0 <= assigned && assigned <= answered, "{:?}", answer.timings);
    let status = h
        .until_session(&created.session_id, SessionState::Active, Some(&killed))
        .await;
    assert_eq!(status.replacements, 1);
    assert_eq!(status.last_kill.unwrap().replacement_assigned_ms, Some(assigned));
    assert!(matches!(
        h.pool.kill(&created.session_id).await,
        Err(PoolError::KillCooldown(_))
    ));
    h.until("refilled pool", |c| c.warm == 2 && c.assigned == 1).await;
}

#[tokio::test]
async fn a_crashed_session_pod_is_replaced_automatically() {
    let h = Harness::start(config(1, 10));
    h.until("warm pool", |c| c.warm == 1).await;
    let created = h.pool.create_session(h.client()).await.unwrap();
    h.fake.crash(created.pod.name.as_str());
    let status = h
        .until_session(&created.session_id, SessionState::Active, Some(&created.pod.name))
        .await;
    assert_eq!(status.replacements, 1);
}

#[tokio::test]
async fn a_dead_warm_pod_is_replaced_and_never_handed_out() {
    let h = Harness::start(config(1, 10));
    h.until("warm pool", |c| c.warm == 1).await;
    let dead = h.fake.names(PodPhase::Ready).remove(0);
    h.fake.auto_ready.store(false, Ordering::SeqCst);
    h.fake.crash(dead.as_str());
    h.until("a replacement starting", |c| c.starting == 1 && c.warm == 0)
        .await;
    let starting = h.fake.names(PodPhase::Starting).remove(0);
    h.fake.make_ready(starting.as_str());
    h.until("warm again", |c| c.warm == 1).await;
    let created = h.pool.create_session(h.client()).await.unwrap();
    assert_eq!(created.pod.name, starting);
}

#[tokio::test]
async fn claim_conflict_moves_on_to_the_next_pod() {
    let h = Harness::start(config(2, 10));
    h.until("warm pool", |c| c.warm == 2).await;
    let stolen = h.fake.names(PodPhase::Ready).remove(0);
    h.fake.steal(stolen.as_str());
    let created = h.pool.create_session(h.client()).await.unwrap();
    assert_ne!(created.pod.name, stolen);
}

#[tokio::test]
async fn ending_a_session_terminates_its_pod_and_leaves_the_others() {
    let h = Harness::start(config(1, 10));
    h.until("warm pool", |c| c.warm == 1).await;
    let a = h.pool.create_session(h.client()).await.unwrap();
    let b = h.pool.create_session(h.client()).await.unwrap();
    // An unknown id is told apart (the API only asks once the token matched the id).
    assert!(matches!(
        h.pool.session(&"nope".into()),
        Err(PoolError::UnknownSession)
    ));
    assert!(matches!(
        h.pool.end(&"nope".into(), "deleted").await,
        Err(PoolError::UnknownSession)
    ));
    h.pool.end(&a.session_id, "deleted").await.unwrap();
    assert!(!h.fake.exists(a.pod.name.as_str()));
    assert_eq!(h.pool.session(&a.session_id).unwrap().state, SessionState::Ended);
    h.pool
        .end(&a.session_id, "deleted")
        .await
        .expect("ending twice is fine");
    assert!(matches!(h.pool.kill(&a.session_id).await, Err(PoolError::Ended)));
    assert_eq!(h.pool.session(&b.session_id).unwrap().state, SessionState::Active);
}

#[tokio::test]
async fn idle_and_old_sessions_are_ended_by_the_resync() {
    let mut c = config(1, 10);
    c.idle_timeout = Duration::from_millis(50);
    c.resync_interval = Duration::from_millis(20);
    let h = Harness::start(c);
    h.until("warm pool", |c| c.warm == 1).await;
    // Pods report their last activity long ago.
    h.fake.last_activity_ms.store(1, Ordering::SeqCst);
    let created = h.pool.create_session(h.client()).await.unwrap();
    h.until_session(&created.session_id, SessionState::Ended, None)
        .await;
    assert!(!h.fake.exists(created.pod.name.as_str()));

    let mut c = config(1, 10);
    c.max_age = Duration::from_millis(50);
    c.resync_interval = Duration::from_millis(20);
    let h = Harness::start(c);
    let created = h.pool.create_session(h.client()).await.unwrap();
    h.until_session(&created.session_id, SessionState::Ended, None)
        .await;
}

#[tokio::test]
async fn a_session_whose_pod_cannot_report_is_idle_from_its_last_known_activity() {
    let mut c = config(1, 10);
    c.idle_timeout = Duration::from_millis(400);
    c.resync_interval = Duration::from_millis(20);
    let h = Harness::start(c);
    h.until("warm pool", |c| c.warm == 1).await;
    let created = h.pool.create_session(h.client()).await.unwrap();
    // Active (reports "now") for a while, then unreachable: it lives on until the idle timeout has passed
    // since the last activity it reported, then ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.fake.fail_activity.store(true, Ordering::SeqCst);
    let unreachable_since = std::time::Instant::now();
    h.until_session(&created.session_id, SessionState::Ended, None)
        .await;
    assert!(
        unreachable_since.elapsed() >= Duration::from_millis(300),
        "ended {:?} after the pod became unreachable; its last activity was more recent",
        unreachable_since.elapsed()
    );
}

#[tokio::test]
async fn active_sessions_are_not_idle() {
    let mut c = config(1, 10);
    c.idle_timeout = Duration::from_secs(60);
    c.resync_interval = Duration::from_millis(10);
    let h = Harness::start(c);
    let created = h.pool.create_session(h.client()).await.unwrap();
    // Several resyncs pass (the pods report activity "now").
    let mut counts = h.pool.watch_counts();
    for _ in 0..5 {
        tokio::time::timeout(WAIT, counts.changed())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        h.pool.session(&created.session_id).unwrap().state,
        SessionState::Active
    );
}

#[tokio::test]
async fn create_failures_do_not_spin_and_recover() {
    let resync = Duration::from_millis(20);
    let mut c = config(2, 10);
    c.resync_interval = resync;
    let started = std::time::Instant::now();
    let h = Harness::start_with(c, |fake| fake.fail_create.store(true, Ordering::SeqCst));
    // Each publish follows a reconcile; wait for three failed attempts.
    let mut counts = h.pool.watch_counts();
    while h.metrics.create_failures.get() < 3 {
        tokio::time::timeout(WAIT, counts.changed())
            .await
            .expect("no retry")
            .unwrap();
        assert_eq!(
            h.pool.counts().total(),
            0,
            "a failed create must not leave a pod behind"
        );
    }
    // Retries come with the resync ticks, not in a tight loop: three attempts span at least two ticks.
    assert!(
        started.elapsed() >= resync * 2,
        "retried {:?} after start",
        started.elapsed()
    );
    h.fake.fail_create.store(false, Ordering::SeqCst);
    h.until("the pool after recovery", |c| c.warm == 2).await;
}

#[tokio::test]
async fn a_failing_backend_answers_new_sessions_at_once() {
    let mut c = config(1, 10);
    c.cold_start_timeout = Duration::from_secs(30);
    c.resync_interval = Duration::from_millis(50);
    let h = Harness::start_with(c, |fake| fake.fail_create.store(true, Ordering::SeqCst));
    let mut counts = h.pool.watch_counts();
    while h.metrics.create_failures.get() < 1 {
        tokio::time::timeout(WAIT, counts.changed())
            .await
            .expect("no attempt")
            .unwrap();
    }
    let started = std::time::Instant::now();
    let refused = h.pool.create_session(h.client()).await;
    assert!(
        matches!(refused, Err(PoolError::Backend(BackendError::Unavailable(_)))),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not a cold-start wait"
    );
    h.fake.fail_create.store(false, Ordering::SeqCst);
    h.until("the pool after recovery", |c| c.warm == 1).await;
    h.pool.create_session(h.client()).await.unwrap();
}

#[tokio::test]
async fn shutdown_terminates_every_pod() {
    let h = Harness::start(config(2, 10));
    h.until("warm pool", |c| c.warm == 2).await;
    let _session = h.pool.create_session(h.client()).await.unwrap();
    h.pool.shutdown().await;
    assert!(h.fake.names(PodPhase::Ready).is_empty() && h.fake.names(PodPhase::Starting).is_empty());
    assert!(matches!(
        h.pool.create_session(h.client()).await,
        Err(PoolError::ShuttingDown)
    ));
}
