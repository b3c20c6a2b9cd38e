//! Helpers for the workspace's integration tests (a dev-dependency only; never part of a shipped binary).
//!
//! - [`cluster`]: a real Kubernetes control plane — etcd, kube-apiserver, kube-controller-manager,
//!   kube-scheduler and kwok — started for one test and torn down when it ends;
//! - [`pool`]: waiting until a provisioner's `GET /pool` says something.

pub mod cluster;
pub mod pool;
