//! The browser side of a session: provision, connect, measure, kill, recover. [`Demo`] is the handle the
//! components hold: read-only signals to show, and commands (start, stop, kill, rate, pause, shared series).
//!
//! A session is one task: it provisions, then runs one measuring loop per connection ([`Demo::measure`]), which
//! alone owns the ping bookkeeping: it answers the socket's frames, sends pings on its clock (the first as soon
//! as the pod says hello), and declares the overdue lost. Stopping aborts the task (an `AbortHandle`), which
//! drops its socket. After a kill the page reconnects at once when the kill's answer names the replacement (a
//! warm pod); otherwise it waits for the pod board to change, and asks the session then, with a slow poll only
//! as the fallback.

use std::time::Duration;

use common::api::{BoardState, PoolEvent, PoolStatus, ProvisionSource, SessionPod, SessionState};
use common::protocol::ServerMessage;
use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::StreamExt;
use futures_util::future::{AbortHandle, Abortable, Either, select};
use gloo_timers::future::sleep;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Api;
use crate::board::Board;
use crate::browser::now;
use crate::samples::{EventKind, History, Pinger, next_due};
use crate::session::{Failure, Input, KillButton, SessionPhase};
use crate::socket::{Incoming, Socket, follow_pool};
use crate::waterfall::KillTrace;

/// A ping unanswered this long counts as lost.
pub const PING_TIMEOUT_MS: f64 = 2_000.0;
/// The fallback poll of a session waiting for its replacement, when the pod board says nothing.
const RECOVERY_FALLBACK: Duration = Duration::from_millis(1_000);
/// How often the pool's counts are polled when its event stream is not available.
const POOL_FALLBACK: Duration = Duration::from_secs(2);
/// How long the shared series waits before reconnecting after its socket closed.
const SHARED_RETRY: Duration = Duration::from_secs(1);

/// Which series a connection measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Series {
    /// The session's own pod: its phase, recoveries and kills follow this connection.
    Session,
    /// A shared server, alongside.
    Shared,
}

/// What the page shows, and the commands it takes. `Copy`: closures take it freely.
#[derive(Clone, Copy)]
pub struct Demo {
    phase: RwSignal<SessionPhase>,
    history: RwSignal<History>,
    shared_history: RwSignal<History>,
    pod: RwSignal<Option<SessionPod>>,
    provisioned: RwSignal<Option<(ProvisionSource, f64)>>,
    paused: RwSignal<bool>,
    kill: RwSignal<KillButton>,
    board: RwSignal<Board>,
    pool: RwSignal<Option<PoolStatus>>,
    notice: RwSignal<Option<String>>,
    announcement: RwSignal<Option<String>>,
    waterfall: RwSignal<Option<KillTrace>>,
    shared_on: RwSignal<bool>,
    /// What the page does not show: one stored value, not seven, since every stored type brings its own copy
    /// of Leptos's storage code into the wasm.
    plumbing: StoredValue<Plumbing>,
}

/// The session's non-reactive state.
struct Plumbing {
    /// The current session's id and token.
    session: Option<(String, String)>,
    /// The replacement's URL from the kill's answer, until the page reconnects.
    next_url: Option<String>,
    /// When the current outage (a kill or a dropped socket) began, until the first pong after it.
    outage_since: Option<f64>,
    /// Woken when the pod board changes, while the session waits for its replacement.
    board_changed: Option<UnboundedSender<()>>,
    /// Aborts the session's task.
    running: Option<AbortHandle>,
    /// Aborts the shared series' task.
    shared_running: Option<AbortHandle>,
    /// Whether the page has had its first sample.
    sampled: bool,
    /// Pings per second. Read only by the pinger, so not a signal (each signal type costs the page code).
    rate_hz: f64,
    api: Api,
}

impl Demo {
    /// Fresh state talking to `api`.
    pub fn new(api: Api) -> Self {
        Self {
            phase: RwSignal::new(SessionPhase::Idle),
            history: RwSignal::new(History::default()),
            shared_history: RwSignal::new(History::default()),
            pod: RwSignal::new(None),
            provisioned: RwSignal::new(None),
            paused: RwSignal::new(false),
            kill: RwSignal::new(KillButton::default()),
            board: RwSignal::new(Board::default()),
            pool: RwSignal::new(None),
            notice: RwSignal::new(None),
            announcement: RwSignal::new(None),
            waterfall: RwSignal::new(None),
            shared_on: RwSignal::new(false),
            plumbing: StoredValue::new(Plumbing {
                session: None,
                next_url: None,
                outage_since: None,
                board_changed: None,
                running: None,
                shared_running: None,
                sampled: false,
                rate_hz: 1.0,
                api,
            }),
        }
    }

    // ----- what the page shows -----

    /// Where the session is.
    pub fn phase(&self) -> ReadSignal<SessionPhase> {
        self.phase.read_only()
    }
    /// The session's samples and events.
    pub fn history(&self) -> ReadSignal<History> {
        self.history.read_only()
    }
    /// The shared servers' samples.
    pub fn shared_history(&self) -> ReadSignal<History> {
        self.shared_history.read_only()
    }
    /// The pod measured now.
    pub fn pod(&self) -> ReadSignal<Option<SessionPod>> {
        self.pod.read_only()
    }
    /// How the session's first pod came, and in how many ms.
    pub fn provisioned(&self) -> ReadSignal<Option<(ProvisionSource, f64)>> {
        self.provisioned.read_only()
    }
    /// Whether pinging is paused.
    pub fn paused(&self) -> ReadSignal<bool> {
        self.paused.read_only()
    }
    /// The kill button's state.
    pub fn kill_button(&self) -> ReadSignal<KillButton> {
        self.kill.read_only()
    }
    /// The pod board.
    pub fn board(&self) -> ReadSignal<Board> {
        self.board.read_only()
    }
    /// The pool's counts, when its event stream is not available.
    pub fn pool(&self) -> ReadSignal<Option<PoolStatus>> {
        self.pool.read_only()
    }
    /// A sentence for the user (errors, retries), if any.
    pub fn notice(&self) -> ReadSignal<Option<String>> {
        self.notice.read_only()
    }
    /// The last thing announced to screen readers, once there is one.
    pub fn announcement(&self) -> ReadSignal<Option<String>> {
        self.announcement.read_only()
    }
    /// The last kill's recovery, step by step.
    pub fn waterfall(&self) -> ReadSignal<Option<KillTrace>> {
        self.waterfall.read_only()
    }
    /// Whether the shared series is on.
    pub fn shared_on(&self) -> ReadSignal<bool> {
        self.shared_on.read_only()
    }
    // ----- commands -----

    /// Starts a session (the Start button, and on load).
    pub fn start(self) {
        self.abort_session();
        self.input(Input::Start);
        let (handle, registration) = AbortHandle::new_pair();
        self.plumbing.update_value(|p| p.running = Some(handle));
        spawn_local(async move {
            let _ = Abortable::new(self.run(), registration).await;
        });
    }

    /// Ends the session (the Stop button).
    pub fn stop(self) {
        self.abort_session();
        self.input(Input::Stop);
        if let Some((id, token)) = self.plumbing.with_value(|p| p.session.clone()) {
            let api = self.plumbing.with_value(|p| p.api.clone());
            spawn_local(async move { api.end(&id, &token).await });
        }
        self.plumbing.update_value(|p| p.session = None);
    }

    /// Kills the session's pod ("Kill my pod").
    pub fn kill_pod(self) {
        let Some((id, token)) = self.plumbing.with_value(|p| p.session.clone()) else {
            return;
        };
        let clicked = now();
        // The request goes out first: tasks run in the order they were spawned, so the redraws and the board's
        // updates that the changes below schedule come after it.
        self.kill.update(|k| k.in_flight = true);
        let api = self.plumbing.with_value(|p| p.api.clone());
        spawn_local(async move {
            let result = api.kill(&id, &token).await;
            let answered = now();
            self.kill.update(|k| {
                k.in_flight = false;
                k.cooldown_until = answered + KillButton::COOLDOWN_MS;
            });
            match result {
                Ok(answer) => {
                    self.trace(|t| t.answered = Some((answered, answer.timings)));
                    if let (Some(pod), Some(url)) = (answer.replacement, answer.websocket_url) {
                        self.pod.set(Some(pod));
                        self.plumbing.update_value(|p| p.next_url = Some(url));
                    }
                }
                Err(failure) => {
                    self.plumbing.update_value(|p| p.outage_since = None);
                    self.waterfall.set(None);
                    self.notice.set(Some(failure.message()));
                }
            }
            // The session may be waiting for this answer (`replacement`).
            self.wake_waiter();
        });
        if let Some(pod) = self.pod.get_untracked() {
            self.history.update(|h| {
                h.mark(
                    clicked,
                    EventKind::Killed {
                        pod: pod.name.to_string(),
                    },
                );
            });
        }
        self.plumbing.update_value(|p| p.outage_since = Some(clicked));
        self.waterfall.set(Some(KillTrace {
            clicked,
            ..KillTrace::default()
        }));
        self.announce("Pod killed; waiting for the replacement.");
    }

    /// Pings per second (0.5 to 10), from the next ping on.
    pub fn set_rate(self, hz: f64) {
        self.plumbing.update_value(|p| p.rate_hz = hz.clamp(0.5, 10.0));
    }

    /// Pauses or resumes pinging.
    pub fn toggle_pause(self) {
        self.paused.update(|p| *p = !*p);
    }

    /// Turns the shared series on (pinging the shared server at `url`) or off (`None`).
    pub fn set_shared(self, url: Option<String>) {
        if let Some(handle) = self.take(|p| p.shared_running.take()) {
            handle.abort();
        }
        self.shared_on.set(url.is_some());
        if let Some(url) = url {
            let (handle, registration) = AbortHandle::new_pair();
            self.plumbing.update_value(|p| p.shared_running = Some(handle));
            spawn_local(async move {
                let _ = Abortable::new(self.run_shared(url), registration).await;
            });
        }
    }

    /// Marks a page-wide event (tab hidden or shown) on the chart.
    pub fn mark(self, kind: EventKind) {
        self.history.update(|h| h.mark(now(), kind));
    }

    /// Keeps the pod board current for the life of the page: the provisioner's event stream, or, when the
    /// browser gives up on it, a poll of the pool's counts. A stream that fails after it was live leaves no
    /// stale tiles behind: the board goes back to counts only.
    pub fn watch_pool(self) {
        let url = format!(
            "{}/pool/events",
            self.plumbing.with_value(|p| p.api.base().to_owned())
        );
        follow_pool(
            &url,
            move |event| self.on_pool_event(event),
            move || {
                self.board.set(Board::default());
                self.poll_pool();
            },
        );
    }

    /// Ends the session when the page goes away, so its pod is freed at once.
    pub fn end_on_page_hide(self) {
        crate::browser::on_page_hide(move || {
            if let Some((id, token)) = self.plumbing.with_value(|p| p.session.clone()) {
                self.plumbing
                    .with_value(|p| p.api.clone())
                    .end_on_leave(&id, &token);
            }
        });
    }

    // ----- the session's task -----

    fn input(&self, input: Input) {
        let before = self.phase.get_untracked();
        self.phase.update(|phase| *phase = phase.on(input));
        let after = self.phase.get_untracked();
        if after != before {
            self.announce(&format!("Session: {}.", after.badge()));
        }
    }

    fn announce(&self, text: &str) {
        self.announcement.set(Some(text.to_owned()));
    }

    fn trace(&self, change: impl FnOnce(&mut KillTrace)) {
        self.waterfall.update(|trace| {
            if let Some(trace) = trace {
                change(trace);
            }
        });
    }

    fn abort_session(&self) {
        if let Some(handle) = self.take(|p| p.running.take()) {
            handle.abort();
        }
    }

    /// Takes something out of the plumbing.
    fn take<T>(&self, f: impl FnOnce(&mut Plumbing) -> Option<T>) -> Option<T> {
        self.plumbing.try_update_value(f).flatten()
    }

    fn on_pool_event(&self, event: PoolEvent) {
        let at = now();
        self.board.update(|board| board.apply(event, at));
        self.wake_waiter();
    }

    fn wake_waiter(&self) {
        if let Some(waiter) = self.plumbing.with_value(|p| p.board_changed.clone()) {
            let _ = waiter.unbounded_send(());
        }
    }

    fn poll_pool(self) {
        spawn_local(async move {
            loop {
                let api = self.plumbing.with_value(|p| p.api.clone());
                self.pool.set(api.pool().await.ok());
                sleep(POOL_FALLBACK).await;
            }
        });
    }

    /// Provision (retrying politely), then connect, measure and recover until aborted.
    async fn run(self) {
        let api = self.plumbing.with_value(|p| p.api.clone());
        let session = loop {
            match api.create_session().await {
                Ok(session) => break session,
                Err(failure) => {
                    self.wait_retry(failure).await;
                    self.input(Input::Start);
                }
            }
        };
        self.provisioned.set(Some((session.source, session.provision_ms)));
        self.notice.set(None);
        self.plumbing
            .update_value(|p| p.session = Some((session.session_id.to_string(), session.token.clone())));
        self.pod.set(Some(session.pod.clone()));
        self.input(Input::Provisioned);
        let mut url = session.websocket_url;
        loop {
            let closed_at = self.measure(&url, Series::Session).await;
            self.input(Input::SocketClosed);
            if self.waterfall.with_untracked(|t| {
                t.as_ref()
                    .is_some_and(|t| t.socket_closed.is_none() && !t.complete())
            }) {
                self.trace(|t| t.socket_closed = Some(closed_at));
            } else if self.plumbing.with_value(|p| p.outage_since).is_none() {
                self.plumbing.update_value(|p| p.outage_since = Some(closed_at));
                self.history
                    .update(|h| h.mark(closed_at, EventKind::Disconnected));
            }
            match self
                .replacement(session.session_id.as_ref(), &session.token)
                .await
            {
                Some(next) => url = next,
                None => return,
            }
        }
    }

    /// Shows the failure with a live countdown until the retry.
    async fn wait_retry(&self, failure: Failure) {
        let seconds = failure.retry_after_s();
        self.input(Input::Failed(failure.clone()));
        for left in (1..=seconds).rev() {
            self.notice.set(Some(failure.message_in(left)));
            sleep(Duration::from_secs(1)).await;
        }
    }

    /// The URL of the session's next pod: the kill's answer's, or, once the pod board changes (or the fallback
    /// poll comes round), what the session says; `None` when the session is over.
    async fn replacement(&self, id: &str, token: &str) -> Option<String> {
        let (tx, mut board_changed) = unbounded();
        self.plumbing.update_value(|p| p.board_changed = Some(tx));
        let api = self.plumbing.with_value(|p| p.api.clone());
        let url = loop {
            if let Some(url) = self.take(|p| p.next_url.take()) {
                break Some(url);
            }
            // While the kill is in flight its answer is the news to wait for: asked now, the session could
            // still name the pod that is going away.
            if self.kill.with_untracked(|k| k.in_flight) {
                let _ = select(board_changed.next(), sleep(RECOVERY_FALLBACK)).await;
                continue;
            }
            match api.session(id, token).await {
                Ok(status) if status.state == SessionState::Active => {
                    if let (Some(pod), Some(url)) = (status.pod, status.websocket_url) {
                        if let Some(assigned) = status.last_kill.and_then(|k| k.replacement_assigned_ms) {
                            self.trace(|t| t.assigned_later_ms = Some(assigned));
                        }
                        self.pod.set(Some(pod));
                        break Some(url);
                    }
                }
                Ok(status) if status.state == SessionState::Ended => {
                    self.notice.set(Some(
                        "The session ended (unused, or too old). Press Start for a new one.".into(),
                    ));
                    self.input(Input::SessionEnded);
                    break None;
                }
                Ok(_) => {}
                Err(failure) => self.notice.set(Some(failure.message())),
            }
            // Wait for news: the board changing, the kill's answer, or the fallback poll.
            let _ = select(board_changed.next(), sleep(RECOVERY_FALLBACK)).await;
        };
        self.plumbing.update_value(|p| p.board_changed = None);
        url
    }

    /// One connection: hello, pings at the chosen rate (the first at once), pongs into the series' history,
    /// until the socket closes. Returns when it closed (page clock).
    async fn measure(&self, url: &str, series: Series) -> f64 {
        let opened_at = now();
        let Ok(mut socket) = Socket::open(url) else {
            return now();
        };
        let history = match series {
            Series::Session => self.history,
            Series::Shared => self.shared_history,
        };
        let mut pinger = Pinger::default();
        let mut pod = String::new();
        let mut next_ping: Option<f64> = None;
        loop {
            let incoming = match next_ping {
                None => socket.next().await,
                Some(due) => {
                    let wait = Duration::from_secs_f64(((due - now()) / 1000.0).max(0.0));
                    let woke = match select(Box::pin(socket.next()), sleep(wait)).await {
                        Either::Left((incoming, _)) => Some(incoming),
                        Either::Right(_) => None,
                    };
                    match woke {
                        Some(incoming) => incoming,
                        None => {
                            next_ping = Some(self.tick(&socket, &mut pinger, history, &pod, due));
                            continue;
                        }
                    }
                }
            };
            let closed_at = match incoming {
                Some(Incoming::Text { text, at }) => {
                    match crate::json::parse_tagged::<ServerMessage>(&text) {
                        Ok(ServerMessage::Hello { pod: hello, .. }) => {
                            pod = hello.name.clone();
                            if series == Series::Session {
                                self.connected(&hello.name, &hello.display_name, at);
                            }
                            // The first ping goes out now, not at the first tick.
                            next_ping = Some(self.tick(&socket, &mut pinger, history, &pod, now()));
                            continue;
                        }
                        Ok(ServerMessage::Pong {
                            seq, pod: answered, ..
                        }) => {
                            if let Some(sample) = pinger.pong(seq, at, &answered) {
                                history.update(|h| h.push(sample));
                                if series == Series::Session {
                                    self.recovered(at, opened_at);
                                    self.first_sample(at);
                                }
                            }
                            continue;
                        }
                        Ok(ServerMessage::Error { message, .. }) => {
                            if series == Series::Session {
                                self.notice.set(Some(message));
                            }
                            continue;
                        }
                        Ok(ServerMessage::Goodbye { .. }) => now(),
                        Err(_) => continue,
                    }
                }
                Some(Incoming::Closed { at }) => at,
                None => now(),
            };
            let lost = pinger.abandon(&pod);
            history.update(|h| lost.into_iter().for_each(|s| h.push(s)));
            return closed_at;
        }
    }

    /// The session's pod said hello at `at`.
    fn connected(&self, name: &str, display_name: &str, at: f64) {
        self.trace(|t| {
            if t.reconnected.is_none() && t.socket_closed.is_some() {
                t.reconnected = Some(at);
            }
        });
        self.history
            .update(|h| h.mark(at, EventKind::Connected { pod: name.to_owned() }));
        self.input(Input::Connected);
        self.announce(&format!("Connected to pod {display_name}."));
    }

    /// The page's first sample, at `at` (ms since navigation began): published as `window.__firstSampleMs`
    /// for the browser test's benchmark.
    fn first_sample(&self, at: f64) {
        if !self.plumbing.with_value(|p| p.sampled) {
            self.plumbing.update_value(|p| p.sampled = true);
            crate::browser::publish("__firstSampleMs", at);
        }
    }

    /// The first pong at `at` on a connection opened (at `opened_at`) after an outage began ends it: the
    /// recovery is labelled on the chart and announced. A pong on an older connection does not: the killed pod
    /// can still answer a ping or two while the kill is under way.
    fn recovered(&self, at: f64, opened_at: f64) {
        let Some(since) = self.plumbing.with_value(|p| p.outage_since) else {
            return;
        };
        if opened_at < since {
            return;
        }
        self.plumbing.update_value(|p| p.outage_since = None);
        self.trace(|t| {
            if t.first_pong.is_none() {
                t.first_pong = Some(at);
            }
        });
        let recovery_ms = at - since;
        self.history
            .update(|h| h.mark(at, EventKind::Recovered { recovery_ms }));
        self.announce(&format!("Recovered in {recovery_ms:.0} ms."));
    }

    /// One tick of the ping clock at `due`: overdue pings are lost, a ping goes out unless paused. Returns the
    /// next tick, a jittered interval later ([`next_due`]).
    fn tick(
        &self,
        socket: &Socket,
        pinger: &mut Pinger,
        history: RwSignal<History>,
        pod: &str,
        due: f64,
    ) -> f64 {
        let at = now();
        let lost = pinger.expire(at, PING_TIMEOUT_MS, pod);
        if !lost.is_empty() {
            history.update(|h| lost.into_iter().for_each(|s| h.push(s)));
        }
        if !self.paused.get_untracked() {
            let text = js_sys::JsString::from(pinger.ping(now()).to_json().as_str());
            // The send time is read after the text is built and handed to JavaScript, right before it goes.
            pinger.restamp_last(now());
            socket.send(&text);
        }
        next_due(
            due,
            at,
            self.plumbing.with_value(|p| p.rate_hz),
            js_sys::Math::random(),
        )
    }

    /// The shared series: one of the shared servers, pinged alongside the session's pod, reconnecting when its
    /// socket closes.
    async fn run_shared(self, url: String) {
        loop {
            self.measure(&url, Series::Shared).await;
            sleep(SHARED_RETRY).await;
        }
    }
}

/// The board's counts in the shape of `GET /pool`, for what shows them.
pub fn counts(board: &Board) -> (usize, usize, usize) {
    (
        board.count(BoardState::Warm),
        board.count(BoardState::Starting),
        board.count(BoardState::Assigned),
    )
}
