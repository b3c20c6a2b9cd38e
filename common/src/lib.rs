//! Wire types shared by every part of resume-showcase.
//!
//! This crate is the single source of truth for what travels between the browser, the ping server and the
//! session provisioner:
//!
//! - [`protocol`]: the WebSocket ping protocol (JSON text frames tagged by `type`), versioned by
//!   [`protocol::PROTOCOL_VERSION`] and documented in `PROTOCOL.md`.
//! - [`api`]: the HTTP API bodies, and the one vocabulary of error codes ([`api::ApiErrorCode`]) every HTTP
//!   endpoint answers with.
//! - [`ids`]: the session id and pod name types.
//! - [`labels`]: the Kubernetes label and annotation keys of session pods and the pool's selectors.
//! - [`names`]: the friendly, stable display name derived from a pod name.
//! - [`origin`]: which browser origins may use the services.
//!
//! - [`runtime`], [`serve`], [`http`], [`metrics`], [`error`], [`client`] (feature `runtime`): logging, the
//!   shutdown signal, the wall clock, HTTP serving with its deadlines, request ids, logs and metrics, the one
//!   error response type of the two services, and who a client is (through trusted proxies) for their
//!   per-client limits.
//! - [`signing`] (feature `signing`): HMAC session tokens and signed routes to session pods.
//!
//! It compiles for `wasm32-unknown-unknown` (the web page uses it); native-only helpers for the two services
//! live behind the `runtime` feature.

pub mod api;
pub mod ids;
pub mod labels;
pub mod names;
pub mod origin;
pub mod protocol;

#[cfg(feature = "runtime")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod error;
#[cfg(feature = "runtime")]
pub mod http;
#[cfg(feature = "runtime")]
pub mod metrics;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod serve;
#[cfg(feature = "signing")]
pub mod signing;
