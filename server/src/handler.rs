//! What the server answers to each client frame: the protocol logic of one connection, without a socket.
//!
//! [`Responder::on_frame`] turns an incoming frame into an [`Action`]; the connection loop in
//! [`crate::connection`] only moves frames and timers. Keeping this pure makes every rule testable without
//! networking.

use std::num::NonZeroU32;
use std::sync::Arc;

use common::protocol::{ClientMessage, ErrorCode, ServerMessage};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use common::runtime::unix_time_ms as now_ms;

/// WebSocket close code for "message too big" (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;

/// An incoming data frame, reduced to what the rules need.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame of this many bytes.
    Binary(usize),
}

/// What the connection must do in response to one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message and carry on.
    Reply(ServerMessage),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// Per-connection protocol state: identity to answer with, size limit and rate limiter.
pub struct Responder {
    pod_name: Arc<str>,
    max_message_bytes: usize,
    limiter: DefaultDirectRateLimiter,
}

impl Responder {
    /// A responder for one connection, allowing `per_second` frames per second (bursts up to the same number).
    pub fn new(pod_name: Arc<str>, max_message_bytes: usize, per_second: NonZeroU32) -> Self {
        Self {
            pod_name,
            max_message_bytes,
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
        }
    }

    /// Applies the rules, in order: size limit, rate limit, then the protocol.
    pub fn on_frame(&self, frame: Frame<'_>) -> Action {
        let len = match frame {
            Frame::Text(text) => text.len(),
            Frame::Binary(len) => len,
        };
        if len > self.max_message_bytes {
            return Action::Close(CLOSE_TOO_BIG, "message too large");
        }
        // Every data frame counts against the rate, so a flood of garbage is limited like a flood of pings.
        if self.limiter.check().is_err() {
            return error(
                ErrorCode::RateLimited,
                "too many messages per second; this one was dropped",
            );
        }
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary(_) => {
                return error(
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not supported; send JSON text",
                );
            }
        };
        match ClientMessage::parse(text) {
            Ok(ClientMessage::Ping { seq, sent_at }) => Action::Reply(ServerMessage::Pong {
                seq,
                sent_at,
                server_time_ms: now_ms(),
                pod: self.pod_name.to_string(),
            }),
            Err(e) => Action::Reply(ServerMessage::Error {
                code: e.code(),
                message: e.to_string(),
            }),
        }
    }
}

fn error(code: ErrorCode, message: &str) -> Action {
    Action::Reply(ServerMessage::Error {
        code,
        message: message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responder(per_second: u32) -> Responder {
        Responder::new("pod-a".into(), 64, NonZeroU32::new(per_second).unwrap())
    }

    fn code_of(action: Action) -> Option<ErrorCode> {
        match action {
            Action::Reply(ServerMessage::Error { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn ping_gets_pong_with_echoed_fields() {
        let action = responder(10).on_frame(Frame::Text(r#"{"type":"ping","seq":9,"sent_at":1.25}"#));
        let Action::Reply(ServerMessage::Pong {
            seq, sent_at, pod, ..
        }) = action
        else {
            panic!("expected a pong, got {action:?}");
        };
        assert_eq!((seq, sent_at, pod.as_str()), (9, 1.25, "pod-a"));
    }

    #[test]
    fn size_limit_comes_first_and_closes_with_1009() {
        let big = "x".repeat(65);
        assert_eq!(
            responder(10).on_frame(Frame::Text(&big)),
            Action::Close(1009, "message too large")
        );
        assert_eq!(
            responder(10).on_frame(Frame::Binary(65)),
            Action::Close(1009, "message too large")
        );
        assert_eq!(
            code_of(responder(10).on_frame(Frame::Text(&"x".repeat(64)))),
            Some(ErrorCode::MalformedJson)
        );
    }

    #[test]
    fn binary_frames_are_refused_with_a_code() {
        assert_eq!(
            code_of(responder(10).on_frame(Frame::Binary(3))),
            Some(ErrorCode::BinaryNotSupported)
        );
    }

    #[test]
    fn rate_limit_drops_the_excess_of_a_burst() {
        let r = responder(5);
        let ping = Frame::Text(r#"{"type":"ping","seq":1,"sent_at":1}"#);
        let limited = (0..50)
            .filter(|_| code_of(r.on_frame(ping)) == Some(ErrorCode::RateLimited))
            .count();
        // A burst of 50 within far less than a second: about 5 pass, the rest are dropped.
        assert!((40..=45).contains(&limited), "{limited} of 50 were limited");
    }
}
