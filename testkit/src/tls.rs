//! TLS for the tests' clients (`https://`, `wss://`) and the test ingress: rustls with the ring provider (no
//! aws-lc C build), the system's roots plus any the caller adds, and a generated certificate for serving.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting the system's roots (`/etc/ssl/certs`) and the PEM certificates in
/// `extra_roots` (a private CA, a test certificate), offering `http/1.1` by ALPN.
pub fn client_config(extra_roots: Option<&str>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _unparsable) = roots.add_parsable_certificates(native.certs);
    if let Some(pem) = extra_roots {
        for cert in rustls_pemfile_certs(pem)? {
            roots.add(cert).context("adding a root certificate")?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn rustls_pemfile_certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading PEM certificates")
}

/// TLS over `stream` to `host`, checked against `config`'s roots.
pub async fn connect(
    stream: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// A self-signed certificate for some names, and a server configuration that serves it.
pub struct TestCertificate {
    /// The certificate, PEM: what a client adds to its roots.
    pub pem: String,
    /// Its private key, PEM (PKCS#8): what a server given the certificate as files needs.
    pub key_pem: String,
    /// Serves the certificate (ALPN `http/1.1`).
    pub server: Arc<ServerConfig>,
}

impl TestCertificate {
    /// A certificate for `names` (host names or IP addresses).
    pub fn for_names(names: &[&str]) -> anyhow::Result<Self> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let generated = rcgen::generate_simple_self_signed(names)?;
        let der = CertificateDer::from(generated.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("the generated key: {e}"))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![der], key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            pem: generated.cert.pem(),
            key_pem: generated.signing_key.serialize_pem(),
            server: Arc::new(server),
        })
    }
}

/// A TLS front on a free loopback port for the plain service at `upstream` (as an ingress terminating TLS
/// would be); returns its address and the task serving it (aborted when dropped by the caller).
pub async fn terminate(
    server: Arc<ServerConfig>,
    upstream: std::net::SocketAddr,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    Ok((address, task))
}
