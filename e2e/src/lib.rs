//! End-to-end tests live in `tests/`: the built site, the real provisioner and its pods, and headless Chromium
//! driven over WebDriver (fantoccini). `cargo xtask test` builds the site first.
