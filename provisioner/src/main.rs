//! `provisioner`: the session provisioner binary. Parses flags, sets up logging, binds, and runs until SIGTERM
//! or SIGINT; everything else lives in the library (`provisioner::run`).

use clap::Parser;
use provisioner::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::runtime::init_tracing();
    let config = Config::parse();
    let signal = common::runtime::shutdown_signal();
    let listener = common::runtime::bind(config.bind, config.port).await?;
    provisioner::run(config, listener, signal).await
}
