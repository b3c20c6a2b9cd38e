//! Session provisioning with the Kubernetes backend against a real control plane (`testkit::cluster`: etcd,
//! kube-apiserver, controller-manager, scheduler, kwok): the release `provisioner` binary runs as the chart's
//! ServiceAccount, and `POST /session` is timed from a warm pool and from an empty one. kwok pods become Ready
//! as soon as they are bound, so "cold" here is the control plane's own path (Job → Pod → schedule → Ready),
//! without image pulls or container start.

use std::ffi::OsStr;

use crate::procs;
use crate::provision::rounds;
use crate::{Paths, Row};

const NAMESPACE: &str = "bench";
const WARM_ROUNDS: usize = 30;
const COLD_ROUNDS: usize = 10;

/// Warm and cold `POST /session` latency on Kubernetes.
pub async fn run(paths: &Paths) -> anyhow::Result<Vec<Row>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = testkit::cluster::Cluster::start().await?;
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/resume-showcase");
    let account = cluster.with_provisioner_rbac(NAMESPACE, "bench", &chart).await?;
    let kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, &account).await?;
    let start = |warm: &'static str| {
        let kubeconfig = kubeconfig.clone();
        async move {
            procs::start_with_env(
                &paths.bin_dir.join("provisioner"),
                &[
                    "--backend",
                    "kubernetes",
                    "--namespace",
                    NAMESPACE,
                    "--edge-url",
                    "wss://edge.bench",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--warm-pool-size",
                    warm,
                    "--max-sessions",
                    "20",
                    "--sessions-per-minute",
                    "60000",
                    "--session-burst",
                    "10000",
                    // One benchmark client asks for every session, as fast as it can.
                    "--max-sessions-per-client",
                    "100000",
                    "--requests-per-second",
                    "100000",
                    "--route-key",
                    "bench-route-key-bench-route-key-bench-route-key",
                ],
                &[("KUBECONFIG", OsStr::new(&kubeconfig))],
                "provisioner listening",
            )
            .await
        }
    };
    let warm = start("2").await?;
    let warm_hist = rounds(&warm, WARM_ROUNDS, 2).await?;
    drop(warm);
    let cold = start("0").await?;
    let cold_hist = rounds(&cold, COLD_ROUNDS, 0).await?;
    drop(cold);
    Ok(vec![
        Row::latency_ms(
            format!("Kubernetes: POST /session, warm pool ({WARM_ROUNDS}×)"),
            &warm_hist,
            "target p99 < 50 ms (a claim is one conditional PATCH)",
        ),
        Row::latency_ms(
            format!("Kubernetes: POST /session, empty pool ({COLD_ROUNDS}×)"),
            &cold_hist,
            "Job → Pod → scheduled → Ready on kwok (no image pull)",
        ),
    ])
}
