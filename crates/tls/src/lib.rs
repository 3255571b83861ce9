//! Mutual TLS for the CP ↔ DP cluster link (DESIGN.md §6), in Kong's two modes:
//!
//! - `shared`: one certificate and key on every node. Each side accepts the other only if
//!   it presents exactly that certificate: holding the key is the credential.
//! - `pki`: certificates signed by `cluster_ca_cert`; the DP checks the CP's certificate
//!   against `cluster_server_name` (or the host it dials, when unset).
//!
//! Both sides require a client certificate and speak HTTP/2 (ALPN `h2`) for tonic. The
//! Raft link has its own credentials (crates/raft); nothing here is accepted there, though
//! `gen_ca` and `issue` can make them (the quickstart does).
//!
//! ```text
//!  CP: TcpListener ──incoming()──▶ handshake (bounded time, failures logged) ──▶ tonic
//!  DP: channel(addr) ──▶ TCP ──▶ handshake ──▶ tonic Channel (h2 keepalives)
//! ```

mod gen;
mod verify;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

pub use gen::{gen_ca, gen_cert, issue, GeneratedCa, GeneratedCert};

/// The server name a DP asks for in `shared` mode, as Kong's DPs do. Only the pinned
/// certificate is checked, so the name is a label, not a credential.
pub const SHARED_SERVER_NAME: &str = "kong_clustering";
/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TCP connect to a CP may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 keepalives on the DP side: a CP that vanished is noticed in seconds, not at
/// the next write.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond this new connections wait in the backlog.
const MAX_HANDSHAKES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {why}")]
    Pem { what: &'static str, why: String },
    #[error("cluster_mtls must be 'shared' or 'pki', got '{0}'")]
    Mode(String),
    #[error("cluster_mtls = pki needs cluster_ca_cert")]
    MissingCa,
    #[error("invalid cluster TLS settings: {0}")]
    Rustls(String),
    #[error("invalid cluster_server_name or control plane host '{0}'")]
    ServerName(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Pki {
        /// `cluster_server_name`; None checks the host the DP dials.
        server_name: Option<String>,
    },
}

/// The cluster credentials of one node, parsed and checked once at start-up.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    mode: Mode,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    ca: Vec<CertificateDer<'static>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            why: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

fn rustls_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(e.to_string())
}

// === impl ClusterTls ===

impl ClusterTls {
    /// `mode` is the `cluster_mtls` setting; `ca` is required for `pki`.
    pub fn from_pem(
        mode: &str,
        cert: &str,
        key: &str,
        ca: Option<&str>,
        server_name: Option<&str>,
    ) -> Result<Self, TlsError> {
        let chain = certs(cert, "cluster_cert")?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| TlsError::Pem {
            what: "cluster_cert_key",
            why: e.to_string(),
        })?;
        let (mode, ca) = match mode {
            "shared" => (Mode::Shared, Vec::new()),
            "pki" => {
                let ca = certs(ca.ok_or(TlsError::MissingCa)?, "cluster_ca_cert")?;
                let server_name = server_name.filter(|s| !s.is_empty()).map(str::to_string);
                (Mode::Pki { server_name }, ca)
            }
            other => return Err(TlsError::Mode(other.to_string())),
        };
        let tls = ClusterTls {
            mode,
            chain,
            key: Arc::new(key),
            ca,
        };
        // Build both once so that a key that does not match its certificate fails at
        // start-up, not at the first DP.
        tls.server_config()?;
        tls.client_config()?;
        Ok(tls)
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in &self.ca {
            roots.add(c.clone()).map_err(rustls_err)?;
        }
        Ok(roots)
    }

    /// The CP side: a client certificate is mandatory.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match &self.mode {
            Mode::Shared => Arc::new(verify::Pinned::new(self.chain[0].clone(), provider.clone())),
            Mode::Pki { .. } => WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()?),
                provider.clone(),
            )
            .build()
            .map_err(rustls_err)?,
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_err)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The DP side.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?;
        let builder = match &self.mode {
            Mode::Shared => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::Pinned::new(
                    self.chain[0].clone(),
                    provider,
                ))),
            Mode::Pki { .. } => builder.with_root_certificates(self.roots()?),
        };
        let mut config = builder
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_err)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The name the DP checks the CP's certificate against when dialling `addr`.
    pub fn server_name(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        let name = match &self.mode {
            Mode::Shared => SHARED_SERVER_NAME.to_string(),
            Mode::Pki {
                server_name: Some(n),
            } => n.clone(),
            Mode::Pki { server_name: None } => host_of(addr).to_string(),
        };
        ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))
    }
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// `notAfter` of a DER certificate, in Unix seconds.
pub fn cert_expiry(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// A TLS connection as the CP's gRPC server receives it.
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Accepts on `listener` and hands completed handshakes to the returned stream (give
/// it to tonic's `serve_with_incoming`). A failed handshake — a DP with the wrong
/// certificate, a port scanner — is logged with the peer's address and dropped; it never
/// stops the listener. Stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<io::Result<ServerStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                () = tx.closed() => return,
            };
            let (tcp, peer) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "cluster listener cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match handshake(&acceptor, tcp, peer).await {
                    Ok(s) => {
                        let _ = tx.send(Ok(s)).await;
                    }
                    Err(e) => {
                        warn!(peer = %peer, error = %e, "refused a cluster connection: TLS handshake failed (check the DP's cluster_cert and cluster_mtls)")
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> io::Result<ServerStream> {
    let _ = tcp.set_nodelay(true);
    debug!(peer = %peer, "cluster connection");
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Opens a mutually authenticated HTTP/2 channel to the CP at `addr` (`host:port`),
/// connecting now so that a refused certificate or a dead CP is an error here.
pub async fn channel(addr: &str, tls: &ClusterTls) -> Result<Channel, String> {
    let config = tls.client_config().map_err(|e| e.to_string())?;
    let name = tls.server_name(addr).map_err(|e| e.to_string())?;
    let target = addr.to_string();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (config, name, target) = (config.clone(), name.clone(), target.clone());
        async move {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            let _ = tcp.set_nodelay(true);
            let stream = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    // The scheme is http because TLS is done by the connector above, with our verifiers.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("invalid control plane address '{addr}': {e}"))?
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| describe(addr, &e))
}

/// tonic's transport errors hide the cause two levels down; an operator needs it.
fn describe(addr: &str, e: &dyn std::error::Error) -> String {
    let mut msg = format!("cannot connect to control plane {addr}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests;
