//! Native-only plumbing shared by the ping server and the provisioner: logging set-up, the shutdown signal and
//! the wall clock. Enabled by the `runtime` feature; never built for the web page.

use std::io::IsTerminal;

/// Installs the global `tracing` subscriber.
///
/// `LOG_FORMAT=json` gives one JSON object per line (for log collectors); anything else gives human-readable
/// lines. `RUST_LOG` filters as usual and defaults to `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` so a second call (tests) is harmless.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}

/// A future that resolves when the process receives SIGTERM (Kubernetes, the provisioner) or SIGINT (Ctrl-C).
///
/// The handlers are installed when this function is called, not when the future is first polled, so a signal
/// that arrives during start-up is not lost (nor does it kill the process with the default action). Call it
/// before announcing readiness.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("cannot listen for SIGTERM/SIGINT: {e}");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The wall clock in Unix milliseconds: the one clock the services share with each other (pods report
/// activity on it, route tokens expire on it). Before 1970 reads as 0.
pub fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
