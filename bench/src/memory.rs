//! Memory: resident memory of the ping server idle and with 10,000 idle WebSocket connections (KiB per
//! connection), and of the provisioner idle.

use std::time::Duration;

use testkit::ws::WsClient;

use crate::procs;
use crate::{Paths, Row};

const CONNECTIONS: usize = 10_000;
/// Connections opened at once while filling up.
const BATCH: usize = 250;

/// RSS of both binaries idle, and per idle connection.
pub async fn run(paths: &Paths) -> anyhow::Result<Vec<Row>> {
    let server = procs::start(
        &paths.bin_dir.join("server"),
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--max-connections",
            "20000",
            // All 10,000 connections come from 127.0.0.1.
            "--max-connections-per-client",
            "20000",
        ],
        "ping server listening",
    )
    .await?;
    settle().await;
    let idle = procs::rss_kib(&server)?;
    let url = format!("ws://{}/ws", server.address);
    let mut sockets = Vec::with_capacity(CONNECTIONS);
    while sockets.len() < CONNECTIONS {
        let batch = futures_util::future::join_all((0..BATCH).map(|_| async {
            let (client, _) = WsClient::connect_hello(&url).await?;
            anyhow::Ok(client)
        }))
        .await;
        for ws in batch {
            sockets.push(ws?);
        }
    }
    settle().await;
    let loaded = procs::rss_kib(&server)?;
    let per_connection = (loaded.saturating_sub(idle)) as f64 / CONNECTIONS as f64;
    drop(sockets);

    let provisioner = procs::start(
        &paths.bin_dir.join("provisioner"),
        &["--bind", "127.0.0.1", "--port", "0", "--warm-pool-size", "0"],
        "provisioner listening",
    )
    .await?;
    settle().await;
    let provisioner_idle = procs::rss_kib(&provisioner)?;
    Ok(vec![
        Row {
            what: "ping server RSS idle".into(),
            value: format!("{:.1} MiB", idle as f64 / 1024.0),
            against: "original Python services: 15–73 MiB".into(),
        },
        Row {
            what: format!("ping server memory per idle connection ({CONNECTIONS} open)"),
            value: format!("{per_connection:.1} KiB (RSS {:.1} MiB)", loaded as f64 / 1024.0),
            against: "target ≤ 8 KiB".into(),
        },
        Row {
            what: "provisioner RSS idle (no pods)".into(),
            value: format!("{:.1} MiB", provisioner_idle as f64 / 1024.0),
            against: "original Python services: 15–73 MiB".into(),
        },
    ])
}

/// Lets allocators and the kernel's accounting settle before reading RSS (a measurement pause, not
/// synchronisation: nothing is waited for).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
