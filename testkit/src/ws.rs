//! A WebSocket client that speaks the ping protocol, for tests, benchmarks and the `smoke` check: connect (`ws://`
//! or `wss://`, with a browser `Origin` if asked), ping, read the next protocol message or the close frame. Every read is
//! bounded by the client's wait (see [`crate::wait`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, bail};
use common::protocol::{ClientMessage, PodInfo, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::wait::{WAIT, within};

/// The raw socket, for tests that need frames the protocol does not have.
pub type Socket = WebSocketStream<Stream>;

/// The bytes under a WebSocket: TCP, or TLS over it. Written here because tokio-tungstenite's own TLS
/// features bring rustls with its default provider, aws-lc, a C build on every run; this is ring's.
pub enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The client's read buffer. tungstenite zero-fills its whole read buffer before every read: its 128 KiB
/// default is a quarter of a ping benchmark's CPU (measured with perf), a cost of the client, not of the
/// server; a pong is under 200 bytes.
const READ_BUFFER_BYTES: usize = 4096;

/// A TCP connection to `target` from `source` (port chosen by the system), with `TCP_NODELAY`.
pub async fn bound_stream(
    source: std::net::IpAddr,
    target: std::net::SocketAddr,
) -> std::io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The `n`-th of many distinct loopback client addresses: 127.1.x.y, never 127.0.0.1 (the default source).
pub fn loopback_client(n: u32) -> std::net::IpAddr {
    let [_, _, high, low] = (n % 65_000 + 1).to_be_bytes();
    std::net::IpAddr::from([127, 1, high, low])
}

/// What the server sent next: a protocol message or the close frame (`None`: closed without one).
#[derive(Debug)]
pub enum Event {
    /// A protocol message.
    Message(ServerMessage),
    /// The connection closed.
    Closed(Option<CloseFrame>),
}

/// One WebSocket connection to a ping server or an edge.
pub struct WsClient {
    /// The socket itself.
    pub ws: Socket,
    wait: Duration,
}

impl WsClient {
    /// Connects to `url` (`ws://…` or `wss://…`).
    pub async fn connect(url: &str) -> Result<Self, tungstenite::Error> {
        Self::connect_from(url, None).await
    }

    /// Connects to `url` as a browser page from `origin` would (with its `Origin` header).
    pub async fn connect_from(url: &str, origin: Option<&str>) -> Result<Self, tungstenite::Error> {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        Self::connect_with(url, None, &headers).await
    }

    /// Connects to `url` (`ws://`, or `wss://` checked against the system's roots) from the local address
    /// `source`, when given (any of 127.0.0.0/8 on loopback: many clients on one machine; the host must then be
    /// a numeric address), with extra request `headers`.
    pub async fn connect_with(
        url: &str,
        source: Option<std::net::IpAddr>,
        headers: &[(&str, &str)],
    ) -> Result<Self, tungstenite::Error> {
        Self::connect_tls(url, source, headers, None).await
    }

    /// [`Self::connect_with`], with `wss://` checked against `tls` (e.g. [`crate::tls::client_config`] with a
    /// private CA) instead of the system's roots.
    pub async fn connect_tls(
        url: &str,
        source: Option<std::net::IpAddr>,
        headers: &[(&str, &str)],
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name: tungstenite::http::HeaderName =
                name.parse()
                    .map_err(|e: tungstenite::http::header::InvalidHeaderName| {
                        tungstenite::Error::HttpFormat(e.into())
                    })?;
            let value = value
                .parse()
                .map_err(|e: tungstenite::http::header::InvalidHeaderValue| {
                    tungstenite::Error::HttpFormat(e.into())
                })?;
            request.headers_mut().append(name, value);
        }
        let secure = request.uri().scheme_str() == Some("wss");
        let host = request
            .uri()
            .host()
            .ok_or(tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = request.uri().port_u16().unwrap_or(if secure { 443 } else { 80 });
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
        let connect = async {
            let tcp = match source {
                None => {
                    let tcp = TcpStream::connect((host.as_str(), port)).await?;
                    tcp.set_nodelay(true)?;
                    tcp
                }
                Some(source) => {
                    let ip: std::net::IpAddr = host
                        .parse()
                        .map_err(|_| tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?;
                    bound_stream(source, std::net::SocketAddr::new(ip, port)).await?
                }
            };
            let stream = if secure {
                let tls = match tls {
                    Some(tls) => tls,
                    None => crate::tls::client_config(None)
                        .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e.to_string())))?,
                };
                Stream::Tls(Box::new(crate::tls::connect(tcp, &host, tls).await?))
            } else {
                Stream::Plain(tcp)
            };
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map(|(ws, _)| ws)
        };
        let ws = tokio::time::timeout(WAIT, connect)
            .await
            .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
        Ok(Self { ws, wait: WAIT })
    }

    /// The same client with another bound on each read.
    pub fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Connects to `url` and reads its `hello`.
    pub async fn connect_hello(url: &str) -> anyhow::Result<(Self, PodInfo)> {
        let mut client = Self::connect(url)
            .await
            .with_context(|| format!("connect to {url}"))?;
        let pod = client.hello().await?;
        Ok((client, pod))
    }

    /// [`Self::connect_hello`] with `wss://` checked against `tls`.
    pub async fn connect_hello_tls(
        url: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<(Self, PodInfo)> {
        let mut client = Self::connect_tls(url, None, &[], Some(tls))
            .await
            .with_context(|| format!("connect to {url}"))?;
        let pod = client.hello().await?;
        Ok((client, pod))
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::text(text)).await.context("send")
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::binary(bytes)).await.context("send")
    }

    /// Sends a ping.
    pub async fn ping(&mut self, seq: u64, sent_at: f64) -> anyhow::Result<()> {
        self.send_text(&ClientMessage::Ping { seq, sent_at }.to_json())
            .await
    }

    /// Sends ping `seq` and waits for its pong; returns the answering pod's name.
    pub async fn ping_pong(&mut self, seq: u64) -> anyhow::Result<String> {
        self.ping(seq, 1.0).await?;
        match self.next_message().await? {
            ServerMessage::Pong { seq: got, pod, .. } if got == seq => Ok(pod),
            other => bail!("expected pong {seq}, got {other:?}"),
        }
    }

    /// The next protocol message or close, skipping control frames.
    pub async fn next_event(&mut self) -> anyhow::Result<Event> {
        loop {
            let frame = within(self.wait, "a message from the server", self.ws.next()).await?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let message = ServerMessage::parse(&text)
                        .with_context(|| format!("not a server message: {text}"))?;
                    return Ok(Event::Message(message));
                }
                Some(Ok(Message::Close(frame))) => return Ok(Event::Closed(frame)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Binary(bytes))) => bail!("unexpected binary frame of {} bytes", bytes.len()),
                Some(Err(e)) => return Err(e).context("websocket error"),
                None => return Ok(Event::Closed(None)),
            }
        }
    }

    /// The next protocol message; a close is an error.
    pub async fn next_message(&mut self) -> anyhow::Result<ServerMessage> {
        match self.next_event().await? {
            Event::Message(message) => Ok(message),
            Event::Closed(frame) => bail!("connection closed: {frame:?}"),
        }
    }

    /// Reads the `hello` and returns who sent it.
    pub async fn hello(&mut self) -> anyhow::Result<PodInfo> {
        match self.next_message().await? {
            ServerMessage::Hello { pod, .. } => Ok(pod),
            other => bail!("expected hello, got {other:?}"),
        }
    }

    /// Reads until the close frame and returns its code.
    pub async fn close_code(&mut self) -> anyhow::Result<u16> {
        match self.next_event().await? {
            Event::Closed(Some(frame)) => Ok(frame.code.into()),
            other => bail!("expected a close frame, got {other:?}"),
        }
    }

    /// Waits until the server side goes away: a close frame, a reset or the end of the stream, whatever comes
    /// before (messages are skipped).
    pub async fn until_closed(&mut self) -> anyhow::Result<()> {
        within(self.wait, "the connection to close", async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_) | Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
    }
}
