//! End-to-end tests live in `tests/`: the built site, the real provisioner and its pods, and headless Chromium
//! driven over WebDriver (fantoccini), locally and on a real node. `cargo xtask test` builds the site and the
//! images first. [`smoke`] is the check of a deployed demo that the `smoke` binary and the real-node test share;
//! [`browser`] drives Chromium for both browser tests; [`http`] is their HTTP client (plain or TLS).

pub mod browser;
pub mod http;
pub mod smoke;
