//! The resume-showcase web page: a Leptos (CSR) app compiled to WebAssembly.
//!
//! Plain-Rust logic, tested natively with `cargo test`:
//! - [`samples`]: the ping bookkeeping and the bounded history of samples and events;
//! - [`stats`]: statistics and the distribution over a window;
//! - [`chart`]: the chart's layout and drawing (time series, two series, distribution), generic over the
//!   plotters backend;
//! - [`board`]: the pod board, fed by the pool's events;
//! - [`waterfall`]: a kill's recovery, step by step;
//! - [`session`]: the session state machine, failure sentences, the kill button's rules;
//! - [`config`]: where the provisioner is;
//! - [`benchmark`]: the chart's benchmark workload (native and in the browser).
//!
//! Browser edges: [`api`] (fetch), [`json`] (the browser's JSON parser), [`socket`] (WebSocket and event
//! stream), [`driver`] (the session's task and its measuring loop), [`browser`] (clock, download, theme),
//! [`canvas`] (the chart's plotters backend), and the Leptos [`components`].

pub mod api;
pub mod benchmark;
pub mod board;
pub mod browser;
pub mod canvas;
pub mod chart;
pub mod components;
pub mod config;
pub mod driver;
pub mod json;
pub mod samples;
pub mod session;
pub mod socket;
pub mod stats;
pub mod waterfall;

/// Entry point of the WebAssembly module: mounts the app on `<body>`.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    // A panic hook only helps where panics unwind or abort through std's machinery; with immediate-abort
    // panics (the page's release build, where the compiler has them) it would never run, so it is left out.
    #[cfg(not(panic = "immediate-abort"))]
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(components::App);
}
