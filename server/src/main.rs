//! `server`: the WebSocket ping server binary. Parses flags, sets up logging, binds, and runs until SIGTERM or
//! SIGINT; everything else lives in the library (`server::run`).

use clap::Parser;
use server::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::runtime::init_tracing();
    let config = Config::parse();
    let listener = tokio::net::TcpListener::bind((config.bind, config.port)).await?;
    server::run(config, listener, common::runtime::shutdown_signal()).await
}
