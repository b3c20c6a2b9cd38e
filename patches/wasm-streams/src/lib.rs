//! A stand-in for [`wasm-streams`](https://crates.io/crates/wasm-streams) 0.5, reduced to the calls
//! `server_fn` makes: [`ReadableStream::from_raw`], [`ReadableStream::from_stream`],
//! [`ReadableStream::into_raw`] and [`ReadableStream::into_stream`].
//!
//! Why it exists: Leptos always depends on `server_fn` with its `browser` feature, and that feature always
//! pulls in `wasm-streams`, whose bridge classes (`IntoUnderlyingSource`, `IntoUnderlyingByteSource`,
//! `IntoUnderlyingSink`) are `#[wasm_bindgen]` exports. Exports are never dead code, so every Leptos page
//! ships them, in its wasm and in its JavaScript glue, whether or not it streams anything. This page has no
//! server functions at all (see BENCHMARKS.md, "Site size", for what this saves). If a streaming server
//! function were ever added, its request would fail at once with a clear error instead of streaming: delete
//! this crate and the `[patch.crates-io]` entry then.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use wasm_bindgen::JsValue;

/// What every operation of this stand-in reports.
const UNSUPPORTED: &str =
    "streaming server functions are not built into this page (see patches/wasm-streams)";

/// A web `ReadableStream`, only carried through.
#[derive(Debug)]
pub struct ReadableStream {
    raw: web_sys::ReadableStream,
}

impl ReadableStream {
    /// Wraps a stream the browser made (a `fetch` response body).
    pub fn from_raw(raw: web_sys::ReadableStream) -> Self {
        Self { raw }
    }

    /// The real crate bridges a Rust stream into a web stream; this stand-in cannot.
    ///
    /// # Panics
    /// Always, by throwing a JavaScript error: nothing in this page streams a request body.
    pub fn from_stream<St>(_stream: St) -> Self
    where
        St: Stream<Item = Result<JsValue, JsValue>> + 'static,
    {
        wasm_bindgen::throw_str(UNSUPPORTED)
    }

    /// The browser's stream.
    pub fn into_raw(self) -> web_sys::ReadableStream {
        self.raw
    }

    /// A Rust stream that ends at once with one error: reading response bodies as streams is not built in.
    pub fn into_stream(self) -> IntoStream {
        IntoStream {
            error: Some(JsValue::from_str(UNSUPPORTED)),
        }
    }
}

/// The stream [`ReadableStream::into_stream`] returns: one error, then the end.
#[derive(Debug)]
pub struct IntoStream {
    error: Option<JsValue>,
}

impl Stream for IntoStream {
    type Item = Result<JsValue, JsValue>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.error.take().map(Err))
    }
}
