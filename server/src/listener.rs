//! The accept side of the server: a TCP listener whose accepted sockets have `TCP_NODELAY` set.
//!
//! A ping is a few dozen bytes; with Nagle's algorithm on, a pong can wait for the client's delayed ACK
//! (tens of milliseconds) whenever an earlier segment is still unacknowledged. axum does not set the option
//! itself, so every accepted socket passes through here.

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};

/// A [`TcpListener`] that sets `TCP_NODELAY` on every accepted socket.
pub struct NoDelay(pub TcpListener);

impl Listener for NoDelay {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.0).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, %address, "cannot set TCP_NODELAY");
        }
        (stream, address)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let mut listener = NoDelay(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let address = listener.local_addr().unwrap();
        let client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().unwrap());
        // The plain listener would not have set it: the client socket, untouched, shows the default.
        assert!(!client.nodelay().unwrap());
    }
}
