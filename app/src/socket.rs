//! The page's live connections, browser edge: a WebSocket as a stream of [`Incoming`] frames, and the pool's
//! event stream (`EventSource`).
//!
//! Each WebSocket message carries the `performance.now()` read first thing in its `onmessage` callback, before
//! any task is woken or any signal updated, so a pong's receive time is as early as the browser can give it;
//! the send time is read just before `send`, the text already a JavaScript string ([`Socket::send`]). Written
//! on `web_sys` directly rather than gloo-net's socket: the timestamp has to be taken inside the callback, and
//! the page then links one WebSocket wrapper fewer.
//!
//! The event stream is gloo-net's `EventSource`, one subscription per event name ([`follow_pool`]).

use common::api::PoolEvent;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_util::StreamExt;
use gloo_net::eventsource::futures::{EventSource, EventSourceSubscription};
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

use crate::browser::now;

/// What a WebSocket delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A text frame, received at `at` (page clock, ms).
    Text {
        /// The frame.
        text: String,
        /// When `onmessage` ran.
        at: f64,
    },
    /// The socket closed (or failed), at `at`.
    Closed {
        /// When it closed.
        at: f64,
    },
}

/// An open WebSocket.
pub struct Socket {
    ws: WebSocket,
    frames: UnboundedReceiver<Incoming>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl Socket {
    /// Opens a WebSocket to `url`.
    pub fn open(url: &str) -> Result<Self, String> {
        let ws = WebSocket::new(url).map_err(|_| format!("cannot open a WebSocket to {url}"))?;
        let (tx, frames) = unbounded();
        let on_message = {
            let tx = tx.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let at = now();
                if let Some(text) = event.data().as_string() {
                    let _ = tx.unbounded_send(Incoming::Text { text, at });
                }
            })
        };
        let closed = |tx: UnboundedSender<Incoming>| {
            move || {
                let _ = tx.unbounded_send(Incoming::Closed { at: now() });
            }
        };
        let on_close = {
            let closed = closed(tx.clone());
            Closure::<dyn FnMut(CloseEvent)>::new(move |_: CloseEvent| closed())
        };
        let on_error = {
            let closed = closed(tx);
            Closure::<dyn FnMut(Event)>::new(move |_: Event| closed())
        };
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Self {
            ws,
            frames,
            _on_message: on_message,
            _on_close: on_close,
            _on_error: on_error,
        })
    }

    /// The next frame or the close; `None` once nothing more can come.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.frames.next().await
    }

    /// Sends a text frame already made a JavaScript string (why: `TextSocket` below); false if the socket is not
    /// open.
    pub fn send(&self, text: &js_sys::JsString) -> bool {
        self.ws.unchecked_ref::<TextSocket>().send_text(text).is_ok()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// A WebSocket seen through the one method declared here.
    type TextSocket;
    /// `WebSocket.send` with a string that is already JavaScript's. web-sys's `send_with_str` takes a Rust
    /// `&str` and decodes it out of the wasm memory inside the call, after the page's send stamp: measured in
    /// Chromium on 2026-12-02, 45–65 µs from that stamp to `send` itself, against 20 µs this way (the text is
    /// made a `JsString` before the stamp).
    #[wasm_bindgen(method, catch, js_name = send)]
    fn send_text(this: &TextSocket, data: &js_sys::JsString) -> Result<(), wasm_bindgen::JsValue>;
}

/// Follows the pool's event stream at `url` (`…/pool/events`) for the life of the page: `on_event` gets each
/// event, `on_failure` is called once when the browser gives up on the stream (a refused answer such as a 429;
/// the browser retries a dropped connection by itself, and gloo-net reports no error while it does), or at
/// once when the stream cannot be opened at all.
///
/// One task per event name, each reading its own subscription, rather than one task over streams merged with
/// `select`: about the same size (+1.8 KB against +2.0, measured a day apart), and no merging code to read.
/// gloo-net's subscriptions cost the page 1.8 KB gzipped over a hand-written `web_sys` listener; BENCHMARKS.md
/// says what paid for them.
pub fn follow_pool(
    url: &str,
    on_event: impl Fn(PoolEvent) + Clone + 'static,
    on_failure: impl FnOnce() + 'static,
) {
    let Ok(mut source) = EventSource::new(url) else {
        return on_failure();
    };
    let (Ok(snapshots), Ok(pods), Ok(gone)) = (
        source.subscribe("snapshot"),
        source.subscribe("pod"),
        source.subscribe("gone"),
    ) else {
        return on_failure();
    };
    spawn_local(read_events(pods, on_event.clone()));
    spawn_local(read_events(gone, on_event.clone()));
    // This task owns the source: its end (the browser gave up) closes the source, which ends the other two.
    spawn_local(async move {
        read_events(snapshots, on_event).await;
        drop(source);
        on_failure();
    });
}

/// Hands each event of one subscription to `on_event`, until the stream fails.
async fn read_events(mut events: EventSourceSubscription, on_event: impl Fn(PoolEvent)) {
    while let Some(Ok((_, message))) = events.next().await {
        if let Some(text) = message.data().as_string()
            && let Ok(parsed) = crate::json::parse_tagged::<PoolEvent>(&text)
        {
            on_event(parsed);
        }
    }
}
