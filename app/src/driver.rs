//! The browser side of a session: provision, connect, ping, kill, recover. It owns the async loops and feeds
//! the pure pieces ([`SessionPhase`], [`Pinger`], [`History`]) through Leptos signals that the components read.

use std::cell::RefCell;
use std::rc::Rc;

use common::api::{PoolStatus, ProvisionSource, SessionPod, SessionState};
use common::protocol::ServerMessage;
use futures_util::{SinkExt, StreamExt};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use gloo_timers::future::sleep;
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::time::Duration;

use crate::api::Api;
use crate::browser::now;
use crate::samples::{EventKind, History, Pinger};
use crate::session::{Failure, Input, KillButton, SessionPhase};

/// A ping unanswered this long counts as lost.
pub const PING_TIMEOUT_MS: f64 = 2_000.0;
/// How often the page asks for the session's state while recovering.
const RECOVERY_POLL: Duration = Duration::from_millis(200);
/// How often the pool panel refreshes.
const POOL_POLL: Duration = Duration::from_secs(2);

/// Every piece of state the components show; `Copy`, so closures take it freely.
#[derive(Clone, Copy)]
pub struct Demo {
    /// Where the session is.
    pub phase: RwSignal<SessionPhase>,
    /// Samples and events.
    pub history: RwSignal<History>,
    /// The pod currently measured.
    pub pod: RwSignal<Option<SessionPod>>,
    /// How the session's first pod was provisioned, and in how many ms.
    pub provisioned: RwSignal<Option<(ProvisionSource, f64)>>,
    /// Pings per second.
    pub rate_hz: RwSignal<f64>,
    /// Pinging paused.
    pub paused: RwSignal<bool>,
    /// The kill button's state.
    pub kill: RwSignal<KillButton>,
    /// Live pool counts.
    pub pool: RwSignal<Option<PoolStatus>>,
    /// A sentence for the user (errors, retries), if any.
    pub notice: RwSignal<Option<String>>,
    /// The current session's id and token.
    session: StoredValue<Option<(String, String)>>,
    /// When the current outage began (kill click or disconnect), for the recovery time.
    outage_since: StoredValue<Option<f64>>,
    /// Bumped on stop so running loops notice they are obsolete.
    generation: StoredValue<u64>,
    /// The provisioner.
    api: StoredValue<Api>,
}

impl Demo {
    /// Fresh state talking to `api`.
    pub fn new(api: Api) -> Self {
        Self {
            phase: RwSignal::new(SessionPhase::Idle),
            history: RwSignal::new(History::default()),
            pod: RwSignal::new(None),
            provisioned: RwSignal::new(None),
            rate_hz: RwSignal::new(1.0),
            paused: RwSignal::new(false),
            kill: RwSignal::new(KillButton::default()),
            pool: RwSignal::new(None),
            notice: RwSignal::new(None),
            session: StoredValue::new(None),
            outage_since: StoredValue::new(None),
            generation: StoredValue::new(0),
            api: StoredValue::new(api),
        }
    }

    fn input(&self, input: Input) {
        self.phase.update(|phase| *phase = phase.on(input));
    }

    fn current(&self, generation: u64) -> bool {
        self.generation.get_value() == generation
    }

    /// Starts a session (Start button).
    pub fn start(self) {
        let generation = self.generation.get_value() + 1;
        self.generation.set_value(generation);
        self.input(Input::Start);
        spawn_local(async move { self.run(generation).await });
    }

    /// Ends the session (Stop button).
    pub fn stop(self) {
        self.generation.update_value(|g| *g += 1);
        self.input(Input::Stop);
        if let Some((id, token)) = self.session.get_value() {
            let api = self.api.get_value();
            spawn_local(async move { api.end(&id, &token).await });
        }
        self.session.set_value(None);
    }

    /// Ends the session when the page goes away, so its pod is freed at once rather than at the idle timeout.
    pub fn end_on_page_hide(self) {
        crate::browser::on_page_hide(move || {
            if let Some((id, token)) = self.session.get_value() {
                self.api.get_value().end_on_leave(&id, &token);
            }
        });
    }

    /// Kills the session's pod ("Kill my pod").
    pub fn kill_pod(self) {
        let Some((id, token)) = self.session.get_value() else {
            return;
        };
        let at = now();
        if let Some(pod) = self.pod.get_untracked() {
            self.history.update(|h| {
                h.mark(
                    at,
                    EventKind::Killed {
                        pod: pod.name.to_string(),
                    },
                )
            });
        }
        self.outage_since.set_value(Some(at));
        self.kill.update(|k| k.in_flight = true);
        let api = self.api.get_value();
        spawn_local(async move {
            let result = api.kill(&id, &token).await;
            self.kill.update(|k| {
                k.in_flight = false;
                k.cooldown_until = now() + KillButton::COOLDOWN_MS;
            });
            if let Err(failure) = result {
                self.outage_since.set_value(None);
                self.notice.set(Some(failure.message()));
            }
        });
    }

    /// Keeps the pool panel fresh for the life of the page.
    pub fn watch_pool(self) {
        spawn_local(async move {
            loop {
                let api = self.api.get_value();
                self.pool.set(api.pool().await.ok());
                sleep(POOL_POLL).await;
            }
        });
    }

    /// Provision (retrying politely), then connect, measure and recover until stopped.
    async fn run(self, generation: u64) {
        let api = self.api.get_value();
        let session = loop {
            match api.create_session().await {
                Ok(session) => {
                    self.provisioned.set(Some((session.source, session.provision_ms)));
                    break session;
                }
                Err(failure) => {
                    if !self.wait_retry(failure, generation).await {
                        return;
                    }
                    self.input(Input::Start);
                }
            }
        };
        if !self.current(generation) {
            api.end(&session.session_id, &session.token).await;
            return;
        }
        self.notice.set(None);
        self.session
            .set_value(Some((session.session_id.to_string(), session.token.clone())));
        self.pod.set(Some(session.pod.clone()));
        self.input(Input::Provisioned);
        let mut url = session.websocket_url;
        loop {
            self.measure(&url, generation).await;
            if !self.current(generation) {
                return;
            }
            self.input(Input::SocketClosed);
            if self.outage_since.get_value().is_none() {
                let at = now();
                self.outage_since.set_value(Some(at));
                self.history.update(|h| h.mark(at, EventKind::Disconnected));
            }
            match self
                .await_replacement(&session.session_id, &session.token, generation)
                .await
            {
                Some(next) => url = next,
                None => return,
            }
        }
    }

    /// Shows the failure with a live countdown; false if stopped meanwhile.
    async fn wait_retry(&self, failure: Failure, generation: u64) -> bool {
        let seconds = failure.retry_after_s();
        self.input(Input::Failed(failure.clone()));
        for left in (1..=seconds).rev() {
            if !self.current(generation) {
                return false;
            }
            let retrying = Failure::AtCapacity { retry_after_s: left };
            let text = match &failure {
                Failure::AtCapacity { .. } => retrying.message(),
                other => other
                    .message()
                    .replace(&format!("{seconds} s"), &format!("{left} s")),
            };
            self.notice.set(Some(text));
            sleep(Duration::from_secs(1)).await;
        }
        self.current(generation)
    }

    /// Polls the session until it has a (new) pod: its WebSocket URL, or `None` if the session is over.
    async fn await_replacement(&self, id: &str, token: &str, generation: u64) -> Option<String> {
        let api = self.api.get_value();
        loop {
            sleep(RECOVERY_POLL).await;
            if !self.current(generation) {
                return None;
            }
            match api.session(id, token).await {
                Ok(status) if status.state == SessionState::Active => {
                    if let (Some(pod), Some(url)) = (status.pod, status.websocket_url) {
                        self.pod.set(Some(pod));
                        return Some(url);
                    }
                }
                Ok(status) if status.state == SessionState::Ended => {
                    self.notice.set(Some(
                        "The session ended (idle or too old). Press Start for a new one.".into(),
                    ));
                    self.input(Input::SessionEnded);
                    return None;
                }
                Ok(_) => {}
                Err(failure) => self.notice.set(Some(failure.message())),
            }
        }
    }

    /// One WebSocket connection: hello, pings at the chosen rate, pongs into the history, until it closes.
    async fn measure(&self, url: &str, generation: u64) {
        let Ok(socket) = WebSocket::open(url) else {
            return;
        };
        let (mut write, mut read) = socket.split();
        let pinger = Rc::new(RefCell::new(Pinger::default()));
        let pod_name = Rc::new(RefCell::new(String::new()));
        let (closed_tx, mut closed_rx) = futures_channel::oneshot::channel::<()>();

        let reader = {
            let (pinger, pod_name, demo) = (pinger.clone(), pod_name.clone(), *self);
            async move {
                while let Some(Ok(Message::Text(text))) = read.next().await {
                    match crate::json::parse::<ServerMessage>(&text) {
                        Ok(ServerMessage::Hello { pod, .. }) => {
                            let at = now();
                            let recovery_ms = demo.outage_since.get_value().map(|since| at - since);
                            demo.outage_since.set_value(None);
                            *pod_name.borrow_mut() = pod.name.clone();
                            demo.history.update(|h| {
                                h.mark(
                                    at,
                                    EventKind::Connected {
                                        pod: pod.name.clone(),
                                        recovery_ms,
                                    },
                                )
                            });
                            demo.input(Input::Connected);
                        }
                        Ok(ServerMessage::Pong { seq, pod, .. }) => {
                            let sample = pinger.borrow_mut().pong(seq, now(), &pod);
                            if let Some(sample) = sample {
                                demo.history.update(|h| h.push(sample));
                            }
                        }
                        Ok(ServerMessage::Error { message, .. }) => demo.notice.set(Some(message)),
                        Ok(ServerMessage::Goodbye { .. }) => break,
                        Err(_) => {}
                    }
                }
                let _ = closed_tx.send(());
            }
        };
        spawn_local(reader);

        loop {
            let interval = Duration::from_secs_f64(1.0 / self.rate_hz.get_untracked().clamp(0.5, 10.0));
            let tick = sleep(interval);
            futures_util::pin_mut!(tick);
            match futures_util::future::select(tick, &mut closed_rx).await {
                futures_util::future::Either::Left(_) => {}
                futures_util::future::Either::Right(_) => break,
            }
            if !self.current(generation) {
                let _ = write.close().await;
                return;
            }
            let pod = pod_name.borrow().clone();
            let lost = pinger.borrow_mut().expire(now(), PING_TIMEOUT_MS, &pod);
            if !lost.is_empty() {
                self.history.update(|h| lost.into_iter().for_each(|s| h.push(s)));
            }
            if self.paused.get_untracked() || pod.is_empty() {
                continue;
            }
            let ping = pinger.borrow_mut().ping(now());
            if write.send(Message::Text(ping.to_json())).await.is_err() {
                break;
            }
        }
        let pod = pod_name.borrow().clone();
        let lost = pinger.borrow_mut().abandon(&pod);
        self.history.update(|h| lost.into_iter().for_each(|s| h.push(s)));
    }
}
