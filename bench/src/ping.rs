//! Ping round trip over WebSocket against the same harness over raw TCP on loopback (the physical floor).
//!
//! Both servers are separate processes (the ping server, and this binary as an echo server), and the same
//! client loop drives both: send a ping-sized message, wait for the answer, record the time.

use std::time::Instant;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use testkit::ws::WsClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::procs::{self, us};
use crate::{Paths, Row};

/// Round trips per client (after a warm-up).
const ROUNDS_SINGLE: usize = 20_000;
const ROUNDS_EACH_OF_100: usize = 1_000;
const WARMUP: usize = 1_000;
/// A ping as the page sends it, for the raw TCP echo to carry the same bytes.
const PING: &str = r#"{"type":"ping","seq":123456,"sent_at":98765.4321}"#;

/// `bench echo-server`: a TCP echo server on a free loopback port; prints the port, serves until killed.
pub fn echo_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        // Same shape as the services' log line, so the test kit's `Service::start` can wait for it.
        eprintln!(
            r#"{{"message":"echo listening","address":"{}"}}"#,
            listener.local_addr()?
        );
        loop {
            let (mut socket, _) = listener.accept().await?;
            socket.set_nodelay(true)?;
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// Nanoseconds from 1 ns to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)] // constant, valid bounds
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn tcp_client(address: String, rounds: usize) -> anyhow::Result<Histogram<u64>> {
    let mut stream = TcpStream::connect(&address).await?;
    stream.set_nodelay(true)?;
    let mut reply = vec![0_u8; PING.len()];
    let mut hist = histogram();
    for round in 0..WARMUP + rounds {
        let started = Instant::now();
        stream.write_all(PING.as_bytes()).await?;
        stream.read_exact(&mut reply).await?;
        if round >= WARMUP {
            hist.record(started.elapsed().as_nanos() as u64)?;
        }
    }
    Ok(hist)
}

async fn ws_client(address: String, rounds: usize) -> anyhow::Result<Histogram<u64>> {
    // The test kit's client reads into a small buffer, like the raw TCP client (see `testkit::ws`).
    let mut client = WsClient::connect(&format!("ws://{address}/ws")).await?;
    client.hello().await?;
    let ws = &mut client.ws;
    let mut hist = histogram();
    for round in 0..WARMUP + rounds {
        let started = Instant::now();
        ws.send(Message::text(PING)).await?;
        loop {
            match ws.next().await.context("closed")?? {
                Message::Text(_) => break,
                _ => continue,
            }
        }
        if round >= WARMUP {
            hist.record(started.elapsed().as_nanos() as u64)?;
        }
    }
    Ok(hist)
}

/// Runs `clients` concurrent clients; returns the merged histogram and answers per second.
async fn load<F, Fut>(clients: usize, rounds: usize, client: F) -> anyhow::Result<(Histogram<u64>, f64)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Histogram<u64>>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|i| tokio::spawn(client(i))).collect();
    let mut merged = histogram();
    for task in tasks {
        merged.add(task.await??)?;
    }
    let per_second = (clients * (rounds + WARMUP)) as f64 / started.elapsed().as_secs_f64();
    Ok((merged, per_second))
}

/// Ping round trip at 1 and 100 clients, WebSocket vs raw TCP.
pub async fn run(paths: &Paths) -> anyhow::Result<Vec<Row>> {
    let server = procs::start(
        &paths.bin_dir.join("server"),
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--max-pings-per-second",
            "1000000",
            "--max-connections",
            "20000",
            // Every benchmark client comes from 127.0.0.1: one address, far beyond a visitor's share.
            "--max-connections-per-client",
            "20000",
        ],
        "ping server listening",
    )
    .await?;
    let echo = procs::start(&std::env::current_exe()?, &["echo-server"], "echo listening").await?;
    let mut rows = Vec::new();
    for clients in [1_usize, 100] {
        let rounds = if clients == 1 {
            ROUNDS_SINGLE
        } else {
            ROUNDS_EACH_OF_100
        };
        let tcp_address = echo.address.clone();
        let (tcp, tcp_rate) = load(clients, rounds, move |_| tcp_client(tcp_address.clone(), rounds)).await?;
        let ws_address = server.address.clone();
        let (ws, ws_rate) = load(clients, rounds, move |_| ws_client(ws_address.clone(), rounds)).await?;
        let ratio = ws.value_at_quantile(0.5) as f64 / tcp.value_at_quantile(0.5).max(1) as f64;
        rows.push(Row {
            what: format!("ping RTT, {clients} client(s): p50 / p99 / p99.9 µs"),
            value: format!(
                "{} / {} / {} (p50 {ratio:.2}× raw TCP)",
                us(ws.value_at_quantile(0.5)),
                us(ws.value_at_quantile(0.99)),
                us(ws.value_at_quantile(0.999))
            ),
            against: format!(
                "raw TCP {} / {} / {}; target p50 ≤ 1.3×",
                us(tcp.value_at_quantile(0.5)),
                us(tcp.value_at_quantile(0.99)),
                us(tcp.value_at_quantile(0.999))
            ),
        });
        if clients == 100 {
            rows.push(Row {
                what: "pongs/s at 100 clients".into(),
                value: format!("{ws_rate:.0}"),
                against: format!("raw TCP echoes/s {tcp_rate:.0} ({:.2}×)", ws_rate / tcp_rate),
            });
        }
    }
    Ok(rows)
}
