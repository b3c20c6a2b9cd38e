//! `server`: the WebSocket ping server binary. Parses flags, sets up logging, binds (printing the port with
//! `--print-port`), and runs until SIGTERM,
//! SIGINT or (with `--exit-on-stdin-eof`) the end of standard input; everything else lives in the library
//! (`server::run`).

use std::io::Write;

use clap::Parser;
use server::Config;
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::runtime::init_tracing();
    let config = Config::parse();
    let signal = common::runtime::shutdown_signal();
    let listener = common::runtime::bind(config.bind, config.port).await?;
    if config.print_port {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", listener.local_addr()?.port())?;
        stdout.flush()?;
    }
    let watch_stdin = config.exit_on_stdin_eof;
    let shutdown = async move {
        tokio::select! {
            () = signal => {}
            () = stdin_closed(), if watch_stdin => tracing::info!("standard input closed: the parent is gone"),
        }
    };
    server::run(config, listener, shutdown).await?;
    // The stdin reader may still sit in a blocking read that the runtime would wait for on drop: leave now.
    std::process::exit(0)
}

/// Resolves when standard input reaches end-of-file (or fails), i.e. when the parent process has gone away.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0_u8; 64];
    while let Ok(read) = stdin.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}
