//! Helpers for the workspace's tests, benchmarks and the `smoke` check (never part of a shipped service):
//! each written once, here.
//!
//! - [`wait`]: the one wait policy (every wait on an event, every wait bounded);
//! - [`ws`]: a WebSocket client speaking the ping protocol (`ws://` and `wss://`);
//! - [`tls`]: rustls (ring) client configurations and generated certificates;
//! - [`spawn`]: starting a service binary and waiting for its "listening" log line;
//! - [`bin`]: building and finding the workspace's own binaries;
//! - [`proc`]: reading `/proc` (children, liveness, memory);
//! - [`metrics`]: scraping `/metrics` as Prometheus would, parsed and type-checked;
//! - [`pool`]: waiting until a provisioner's `GET /pool` says something;
//! - [`cluster`]: a real Kubernetes control plane — etcd, kube-apiserver, kube-controller-manager,
//!   kube-scheduler and kwok — started for one test and torn down when it ends;
//! - [`node`]: a real node beside that control plane (containerd, kubelet, kube-proxy) running real containers;
//! - [`traefik`]: Traefik on the host, the chart's ingress controller, in front of that node.

pub mod bin;
pub mod cluster;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod proc;
pub mod spawn;
pub mod tls;
pub mod traefik;
pub mod wait;
pub mod ws;
