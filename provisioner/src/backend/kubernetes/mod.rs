//! The Kubernetes backend (in progress): session pods as Jobs labelled for the pool.
//!
//! Built so far: [`manifest`], the Job template built in code. Still to come in this module: the watch-driven
//! pod state, conflict-safe claims (relabel with a `resourceVersion` precondition), kill by deleting the pod,
//! retries with backoff, and the edge routing with signed tokens.

pub mod manifest;
