//! The page's session state machine and the sentences it shows, as plain Rust.
//!
//! [`SessionPhase`] is where the page is (provisioning, live, recovering after a kill...);
//! [`SessionPhase::on`] applies one [`Input`] and returns the next phase. [`Failure`] turns an HTTP outcome
//! (told apart by its typed error code, never by the message text) into a human sentence and a retry delay.
//! The browser code in `driver.rs` only feeds inputs in and acts on the phase.

/// Where the page is.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionPhase {
    /// Nothing started yet.
    Idle,
    /// `POST /session` in flight.
    Provisioning,
    /// Opening the WebSocket to the session's pod.
    Connecting,
    /// Measuring.
    Live,
    /// The pod was killed or the socket dropped: waiting for the replacement pod.
    Recovering,
    /// A request failed and will be retried.
    Retrying {
        /// The sentence shown.
        message: String,
        /// Seconds until the retry.
        in_s: u64,
    },
    /// The session is over (ended by the provisioner or by the user).
    Ended,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The user pressed Start.
    Start,
    /// The provisioner gave us a session.
    Provisioned,
    /// A request failed.
    Failed(Failure),
    /// The socket is open and said hello.
    Connected,
    /// The socket closed (kill, crash, shutdown, network).
    SocketClosed,
    /// The provisioner reports the session ended.
    SessionEnded,
    /// The user stopped.
    Stop,
}

impl SessionPhase {
    /// The next phase after `input`.
    pub fn on(&self, input: Input) -> SessionPhase {
        match (self, input) {
            (_, Input::Stop) => SessionPhase::Ended,
            (_, Input::SessionEnded) => SessionPhase::Ended,
            (SessionPhase::Idle | SessionPhase::Ended | SessionPhase::Retrying { .. }, Input::Start) => {
                SessionPhase::Provisioning
            }
            (SessionPhase::Provisioning, Input::Provisioned) => SessionPhase::Connecting,
            (SessionPhase::Connecting | SessionPhase::Recovering, Input::Connected) => SessionPhase::Live,
            (SessionPhase::Live | SessionPhase::Connecting, Input::SocketClosed) => SessionPhase::Recovering,
            (_, Input::Failed(failure)) => SessionPhase::Retrying {
                message: failure.message(),
                in_s: failure.retry_after_s(),
            },
            (phase, _) => phase.clone(),
        }
    }

    /// Short status text for the connection badge.
    pub fn badge(&self) -> &'static str {
        match self {
            SessionPhase::Idle => "not started",
            SessionPhase::Provisioning => "getting a pod…",
            SessionPhase::Connecting => "connecting…",
            SessionPhase::Live => "live",
            SessionPhase::Recovering => "recovering…",
            SessionPhase::Retrying { .. } => "waiting to retry",
            SessionPhase::Ended => "ended",
        }
    }
}

use common::api::{ApiErrorCode, ErrorBody};

/// Why a request to the provisioner failed, from the user's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Every session slot is taken.
    AtCapacity {
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// Too many requests from this address.
    RateLimited {
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// This address already holds its share of sessions (other tabs, or other people behind the same address).
    TooManySessions {
        /// The provisioner's sentence, shown as is.
        message: String,
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// No answer at all (down, wrong URL, CORS refused).
    Unreachable,
    /// The provisioner could not find a pod in time.
    Timeout,
    /// Any other error, with the provisioner's own sentence.
    Other(String),
}

impl Failure {
    /// Classifies an HTTP answer: `status` is `None` when the request never got one; `body` is its error body,
    /// when it had one.
    pub fn from_http(status: Option<u16>, retry_after: Option<u64>, body: Option<ErrorBody>) -> Self {
        let Some(status) = status else {
            return Failure::Unreachable;
        };
        let retry_after_s = retry_after.unwrap_or(10);
        match body.as_ref().map(|b| b.error) {
            Some(ApiErrorCode::AtCapacity) => Failure::AtCapacity { retry_after_s },
            Some(ApiErrorCode::RateLimited) => Failure::RateLimited { retry_after_s },
            Some(ApiErrorCode::TooManySessions) => Failure::TooManySessions {
                message: body.map(|b| b.message).unwrap_or_default(),
                retry_after_s,
            },
            Some(ApiErrorCode::ColdStartTimeout) => Failure::Timeout,
            _ if status == 429 => Failure::RateLimited { retry_after_s },
            _ if status == 504 => Failure::Timeout,
            _ => Failure::Other(
                body.map(|b| b.message)
                    .unwrap_or_else(|| format!("the provisioner answered HTTP {status}")),
            ),
        }
    }

    /// Seconds before trying again.
    pub fn retry_after_s(&self) -> u64 {
        match self {
            Failure::AtCapacity { retry_after_s }
            | Failure::RateLimited { retry_after_s }
            | Failure::TooManySessions { retry_after_s, .. } => (*retry_after_s).max(1),
            Failure::Unreachable | Failure::Timeout | Failure::Other(_) => 5,
        }
    }

    /// The sentence shown to the user.
    pub fn message(&self) -> String {
        self.message_in(self.retry_after_s())
    }

    /// The sentence shown `wait` seconds before the retry (the countdown).
    pub fn message_in(&self, wait: u64) -> String {
        match self {
            Failure::AtCapacity { .. } => format!("The demo is at capacity, retrying in {wait} s."),
            Failure::RateLimited { .. } => {
                format!("Too many new sessions from your address, retrying in {wait} s.")
            }
            Failure::TooManySessions { message, .. } => format!("{message} (retrying in {wait} s)"),
            Failure::Unreachable => format!("The provisioner is unreachable, retrying in {wait} s."),
            Failure::Timeout => format!("No pod became ready in time, retrying in {wait} s."),
            Failure::Other(message) => format!("{message} (retrying in {wait} s)"),
        }
    }
}

/// The "Kill my pod" button: off while a kill is in flight and during the cooldown after it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KillButton {
    /// A kill request has not been answered yet.
    pub in_flight: bool,
    /// Page-clock time (ms) until which the button stays off.
    pub cooldown_until: f64,
}

impl KillButton {
    /// Cooldown after a kill, matching the provisioner's default.
    pub const COOLDOWN_MS: f64 = 5_000.0;

    /// Whether the button can be pressed at `now` in `phase`.
    pub fn enabled(&self, phase: &SessionPhase, now: f64) -> bool {
        *phase == SessionPhase::Live && !self.in_flight && now >= self.cooldown_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_kill_and_recovery() {
        let phase = SessionPhase::Idle.on(Input::Start);
        assert_eq!(phase, SessionPhase::Provisioning);
        let phase = phase.on(Input::Provisioned).on(Input::Connected);
        assert_eq!(phase, SessionPhase::Live);
        let phase = phase.on(Input::SocketClosed);
        assert_eq!(phase, SessionPhase::Recovering);
        assert_eq!(phase.on(Input::Connected), SessionPhase::Live);
        assert_eq!(SessionPhase::Live.on(Input::Stop), SessionPhase::Ended);
    }

    #[test]
    fn irrelevant_inputs_do_not_move_the_machine() {
        assert_eq!(SessionPhase::Idle.on(Input::Connected), SessionPhase::Idle);
        assert_eq!(SessionPhase::Live.on(Input::Start), SessionPhase::Live);
        assert_eq!(SessionPhase::Ended.on(Input::SocketClosed), SessionPhase::Ended);
    }

    #[test]
    fn failures_become_sentences_with_retry_delays() {
        let capacity = Failure::from_http(
            Some(429),
            Some(12),
            Some(ErrorBody::new(ApiErrorCode::AtCapacity, "no room")),
        );
        assert_eq!(capacity.message(), "The demo is at capacity, retrying in 12 s.");
        let phase = SessionPhase::Provisioning.on(Input::Failed(capacity));
        assert!(matches!(phase, SessionPhase::Retrying { in_s: 12, .. }));
        assert_eq!(phase.on(Input::Start), SessionPhase::Provisioning);
        assert_eq!(
            Failure::from_http(None, None, None).message(),
            "The provisioner is unreachable, retrying in 5 s."
        );
        // The code decides, not the sentence: a rate limit that talks about capacity is still a rate limit.
        assert_eq!(
            Failure::from_http(
                Some(429),
                None,
                Some(ErrorBody::new(ApiErrorCode::RateLimited, "over capacity"))
            ),
            Failure::RateLimited { retry_after_s: 10 }
        );
        assert_eq!(Failure::from_http(Some(504), None, None), Failure::Timeout);
        let share = Failure::from_http(
            Some(429),
            Some(30),
            Some(ErrorBody::new(
                ApiErrorCode::TooManySessions,
                "your address already holds 3 sessions",
            )),
        );
        assert_eq!(
            share.message(),
            "your address already holds 3 sessions (retrying in 30 s)"
        );
        assert_eq!(
            Failure::from_http(
                Some(503),
                None,
                Some(ErrorBody::new(ApiErrorCode::ShuttingDown, "leaving"))
            ),
            Failure::Other("leaving".into())
        );
    }

    #[test]
    fn kill_button_respects_flight_and_cooldown() {
        let mut button = KillButton::default();
        assert!(button.enabled(&SessionPhase::Live, 0.0));
        assert!(!button.enabled(&SessionPhase::Recovering, 0.0));
        button.in_flight = true;
        assert!(!button.enabled(&SessionPhase::Live, 0.0));
        button = KillButton {
            in_flight: false,
            cooldown_until: 5_000.0,
        };
        assert!(!button.enabled(&SessionPhase::Live, 4_999.0));
        assert!(button.enabled(&SessionPhase::Live, 5_000.0));
    }
}
