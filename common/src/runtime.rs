//! Native-only plumbing shared by the ping server and the provisioner: logging set-up, binding the listener,
//! the shutdown signal and the wall clock. Enabled by the `runtime` feature; never built for the web page.

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

/// Binds the service's listener; a port already in use (or not allowed) is one sentence naming it and the
/// flag that changes it, not the bare "Address already in use".
pub async fn bind(address: std::net::IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((address, port))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), bind_failure(address, port, &e)))
}

fn bind_failure(address: std::net::IpAddr, port: u16, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "port {port} on {address} is already in use (another instance?): choose another with --port \
             (or PORT), or 0 for any free one"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "not allowed to listen on port {port} of {address} (ports below 1024 need privileges): choose \
             another with --port (or PORT)"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{address} is not an address of this machine: choose another with --bind (or BIND)")
        }
        _ => format!("cannot listen on {address}:{port}: {e}"),
    }
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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_busy_port_is_one_sentence_naming_it_and_the_flag() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let error = super::bind([127, 0, 0, 1].into(), port)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("port {port} on 127.0.0.1 is already in use")),
            "{error}"
        );
        assert!(error.contains("--port"), "{error}");
    }
}
