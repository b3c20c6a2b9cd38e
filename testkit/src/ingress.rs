//! A minimal ingress controller on the host, for the real-node tests: it serves the cluster's `Ingress`
//! objects (class `traefik` or none) of one namespace the way Traefik does for this chart, so a test reaches
//! the chart through the production route (ingress → provisioner Service, ingress → edge Service → session
//! pod) without building Traefik (one more Go build of about 13 minutes here; see BENCHMARKS.md).
//!
//! What it does, per connection: reads the request head, picks the rule by host and the longest matching
//! `Prefix` path, resolves the backend Service's cluster IP and port (kube-proxy makes cluster IPs reachable
//! from the host), and passes the connection through with `X-Forwarded-For` set to the peer (a client's own
//! header is replaced, as Traefik does for untrusted peers), `X-Forwarded-Proto` and `X-Forwarded-Host`.
//! Plain requests are sent with `Connection: close`, so every request is routed on its own; WebSocket
//! upgrades stay open. It serves TLS with a certificate it is given (not the Ingress's Secret); it does not do
//! other path types, or load balancing beyond kube-proxy's.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressServiceBackend};
use kube::{Api, Client};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted.
const MAX_HEAD: usize = 32 * 1024;

/// A running ingress; stops when dropped.
pub struct HostIngress {
    /// Where it listens.
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostIngress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostIngress {
    /// Listens on `bind` and serves the Ingresses of `namespace` over plain HTTP.
    pub async fn start(client: Client, namespace: &str, bind: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(client, namespace, bind, None).await
    }

    /// Listens on `bind` and serves the Ingresses of `namespace`, over TLS with `tls` when given (the way the
    /// chart's Ingress is served with its certificate; passed through as plain HTTP with
    /// `X-Forwarded-Proto: https`).
    pub async fn start_with(
        client: Client,
        namespace: &str,
        bind: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("the test ingress cannot listen on {bind}"))?;
        let address = listener.local_addr()?;
        let namespace = namespace.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (client, namespace, tls) = (client.clone(), namespace.clone(), tls.clone());
                tokio::spawn(async move {
                    let served = match tls {
                        None => serve(stream, peer, client, &namespace, "http").await,
                        Some(tls) => match tokio_rustls::TlsAcceptor::from(tls).accept(stream).await {
                            Ok(stream) => serve(stream, peer, client, &namespace, "https").await,
                            Err(e) => Err(anyhow::anyhow!("TLS handshake: {e}")),
                        },
                    };
                    if let Err(e) = served {
                        eprintln!("testkit ingress: {peer}: {e:#}");
                    }
                });
            }
        });
        Ok(Self { address, task })
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    client: Client,
    namespace: &str,
    proto: &str,
) -> anyhow::Result<()> {
    let mut buffer = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buffer.len() > MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large").await;
        }
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let request = Head::parse(&head).context("malformed request head")?;
    let Some(backend) = route(&client, namespace, &request).await? else {
        return respond(&mut stream, "404 Not Found").await;
    };
    let upstream_address = resolve(&client, namespace, &backend).await?;
    let mut upstream = TcpStream::connect(upstream_address)
        .await
        .with_context(|| format!("connecting to {upstream_address}"))?;
    upstream
        .write_all(request.forwarded(peer, proto).as_bytes())
        .await?;
    upstream.write_all(&buffer[head_end..]).await?;
    match tokio::io::copy_bidirectional(&mut stream, &mut upstream).await {
        // A peer that leaves without a TLS close_notify or resets is how browsers and proxies end a
        // connection: not worth a line in the test's output.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Ok(())
        }
        other => other.map(drop).map_err(Into::into),
    }
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: &str) -> anyhow::Result<()> {
    let body = format!("{status}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(())
}

/// A request head: its first line, host, path and headers.
struct Head<'a> {
    request_line: &'a str,
    path: &'a str,
    host: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Head<'a> {
    fn parse(head: &'a str) -> Option<Self> {
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?;
        let path = request_line.split(' ').nth(1)?;
        let headers: Vec<(&str, &str)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let host = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map_or("", |(_, v)| v);
        Some(Self {
            request_line,
            path: path.split('?').next().unwrap_or(path),
            host: host.rsplit_once(':').map_or(host, |(h, _)| h),
            headers,
        })
    }

    fn is_upgrade(&self) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("upgrade") && v.eq_ignore_ascii_case("websocket"))
    }

    /// The head as sent upstream.
    fn forwarded(&self, peer: SocketAddr, proto: &str) -> String {
        let upgrade = self.is_upgrade();
        let mut out = format!("{}\r\n", self.request_line);
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("x-forwarded-") || (!upgrade && lower == "connection") {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!(
            "X-Forwarded-For: {}\r\nX-Forwarded-Proto: {proto}\r\nX-Forwarded-Host: {}\r\n",
            peer.ip(),
            self.host
        ));
        if !upgrade {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        out
    }
}

/// Whether `path` is under `prefix` by path elements (`/ws` matches `/ws` and `/ws/x`, not `/wsx`).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The backend of the rule matching the request: its host (or no host), the longest `Prefix` path.
async fn route(
    client: &Client,
    namespace: &str,
    request: &Head<'_>,
) -> anyhow::Result<Option<IngressServiceBackend>> {
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), namespace);
    let mut best: Option<(usize, IngressServiceBackend)> = None;
    for ingress in ingresses.list(&Default::default()).await?.items {
        let Some(spec) = ingress.spec else { continue };
        if spec
            .ingress_class_name
            .as_deref()
            .is_some_and(|class| class != "traefik")
        {
            continue;
        }
        for rule in spec.rules.unwrap_or_default() {
            if rule.host.as_deref().is_some_and(|h| h != request.host) {
                continue;
            }
            for path in rule.http.map(|h| h.paths).unwrap_or_default() {
                let prefix = path.path.unwrap_or_else(|| "/".into());
                if path.path_type == "Prefix"
                    && prefix_matches(&prefix, request.path)
                    && best.as_ref().is_none_or(|(len, _)| prefix.len() > *len)
                    && let Some(service) = path.backend.service
                {
                    best = Some((prefix.len(), service));
                }
            }
        }
    }
    Ok(best.map(|(_, service)| service))
}

/// The backend Service's cluster IP and port.
async fn resolve(
    client: &Client,
    namespace: &str,
    backend: &IngressServiceBackend,
) -> anyhow::Result<SocketAddr> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = services.get(&backend.name).await?;
    let spec = service.spec.context("a Service without spec")?;
    let ip = spec.cluster_ip.context("a Service without a cluster IP")?;
    let wanted = backend.port.as_ref().context("a backend without a port")?;
    let port = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| wanted.number == Some(p.port) || (wanted.name.is_some() && wanted.name == p.name))
        .map(|p| p.port);
    let Some(port) = port else {
        bail!("Service {} has no port {wanted:?}", backend.name);
    };
    Ok(SocketAddr::new(ip.parse()?, u16::try_from(port)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_by_path_element() {
        assert!(prefix_matches("/ws", "/ws"));
        assert!(prefix_matches("/ws", "/ws/session/x"));
        assert!(!prefix_matches("/ws", "/wsx"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn the_forwarded_head_replaces_the_clients_headers() {
        let head = "GET /session?x=1 HTTP/1.1\r\nHost: localhost:80\r\nX-Forwarded-For: 6.6.6.6\r\n\
                    Connection: keep-alive\r\n\r\n";
        let parsed = Head::parse(head).unwrap();
        assert_eq!((parsed.host, parsed.path), ("localhost", "/session"));
        let out = parsed.forwarded("127.0.0.9:5000".parse().unwrap(), "https");
        assert!(out.contains("X-Forwarded-For: 127.0.0.9\r\n"), "{out}");
        assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
        assert!(!out.contains("6.6.6.6") && !out.contains("keep-alive"), "{out}");
        assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
        let upgrade =
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let out = Head::parse(upgrade)
            .unwrap()
            .forwarded("127.0.0.1:1".parse().unwrap(), "http");
        assert!(
            out.contains("Connection: Upgrade") && !out.contains("close"),
            "{out}"
        );
    }
}
