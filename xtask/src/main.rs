//! Project automation, the `cargo xtask` pattern: plain Rust instead of shell scripts.
//!
//! - `cargo xtask demo`: builds what the demo needs and runs it locally (see README.md).
//! - `cargo xtask test`: installs the tools the checks need when missing, then runs formatting, clippy and every
//!   test, and prints one summary line. `.ci/run` calls exactly this.
//! - `cargo xtask bench`: every benchmark, printed as a table (see BENCHMARKS.md).
//! - `cargo xtask soak`: a long run with periodic kills that reports leaks (not in CI).
//! - `cargo xtask picture`: refreshes the README's picture of the page (`docs/page.webp`) with the browser test.
//!
//! Each command lives in its own module; [`process`] holds the small helpers for running programs.

mod bench;
mod cluster;
mod demo;
mod disk;
#[cfg(test)]
mod docs;
mod go;
mod image;
mod process;
mod setup;
mod site;
mod test;
mod traefik;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "resume-showcase project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local demo (provisioner with the local backend).
    Demo(demo::Args),
    /// Install missing tools, then run fmt, clippy and every test.
    Test(test::Args),
    /// Only install the tools the tests need (idempotent).
    Setup,
    /// Run the benchmarks (release builds) and print a table: all, or those named (ping, memory, clients,
    /// provision, provision-k8s, real-node, page).
    Bench {
        /// Benchmarks to run.
        only: Vec<String>,
    },
    /// Soak the local demo: sessions pinging for minutes with periodic kills, then report leaks.
    Soak(bench::SoakArgs),
    /// Build (once, cached by version) the Kubernetes binaries for the cluster tests, and Traefik for the real
    /// node's.
    ClusterTools,
    /// Build the web page for deployment (GitHub Pages), with its config.json.
    Site(site::Args),
    /// Build the two container images (static musl binaries) as OCI archives in target/images, without Docker.
    Images {
        /// Also the test node's pod sandbox image (target/images/pause.tar; builds cluster-tools when missing).
        #[arg(long)]
        pause: bool,
    },
    /// Refresh the README's picture of the page (docs/page.webp): the browser test, after a kill, takes it.
    Picture,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = std::env::set_current_dir(process::workspace_root())
        .map_err(anyhow::Error::from)
        .and_then(|()| match cli.command {
            Command::Demo(args) => demo::run(&args),
            Command::Test(args) => test::run(&args),
            Command::Setup => setup::ensure_all().map(|_| ()),
            Command::Bench { only } => bench::run(&only),
            Command::Soak(args) => bench::soak(&args),
            Command::Site(args) => site::run(&args),
            Command::Picture => test::picture(),
            Command::Images { pause } => image::build().and_then(|mut images| {
                if pause {
                    images.push(image::pause(&cluster::ensure_binaries()?)?);
                }
                for image in images {
                    println!(
                        "{} {} ({:.1} MB)",
                        image.reference,
                        image.archive.display(),
                        image.size as f64 / 1e6
                    );
                }
                Ok(())
            }),
            Command::ClusterTools => {
                // The directory on stdout, for scripts and the test harness (testkit::cluster).
                let bin = cluster::ensure_binaries()?;
                traefik::ensure(&bin)?;
                println!("{}", bin.display());
                Ok(())
            }
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
