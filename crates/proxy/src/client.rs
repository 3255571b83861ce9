//! The upstream client: connections pooled per (host, port, TLS settings, SNI, HTTP
//! version), connect timeouts covering TCP and TLS, and requests handed back when a
//! pooled connection turns out closed before the request was written.
//!
//! HTTP/1.1 connections return to the pool once their response body is read (a task
//! waits for the connection to be ready again); HTTP/2 connections (grpc, grpcs) are
//! shared.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsConnector;

use crate::body::ProxyBody;
use crate::error::ProxyError;

/// Kong's `upstream_keepalive_pool_size`.
pub const DEFAULT_MAX_IDLE_PER_KEY: usize = 512;
/// Kong's `upstream_keepalive_idle_timeout` (seconds).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    host: String,
    port: u16,
    tls: Option<(u64, String)>,
    h2: bool,
}

/// Where and how to connect.
pub struct Endpoint<'a> {
    pub host: &'a str,
    pub port: u16,
    /// Client config, its pool key and the SNI to send.
    pub tls: Option<(&'a Arc<ClientConfig>, u64, &'a str)>,
    pub h2: bool,
    pub connect_timeout: Duration,
}

impl Endpoint<'_> {
    fn key(&self) -> PoolKey {
        PoolKey {
            host: self.host.to_string(),
            port: self.port,
            tls: self.tls.map(|(_, k, sni)| (k, sni.to_string())),
            h2: self.h2,
        }
    }
}

enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

/// A connection checked out of the pool (or just made).
pub struct Conn {
    sender: Sender,
    key: PoolKey,
    pub reused: bool,
}

/// A request that failed; `request` is handed back when it was never written.
pub struct SendFailure {
    pub error: hyper::Error,
    pub request: Option<Request<ProxyBody>>,
}

/// An idle HTTP/1.1 connection and when it became idle.
type Idle = (http1::SendRequest<ProxyBody>, Instant);

pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    shared: Mutex<HashMap<PoolKey, http2::SendRequest<ProxyBody>>>,
    max_idle_per_key: usize,
    idle_timeout: Duration,
}

// === impl Pool ===

impl Pool {
    pub fn new(max_idle_per_key: usize, idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
            max_idle_per_key,
            idle_timeout,
        })
    }

    /// A ready connection to `ep`: an idle pooled one, or a new one.
    pub async fn checkout(&self, ep: &Endpoint<'_>) -> Result<Conn, ProxyError> {
        let key = ep.key();
        if let Some(sender) = self.take_idle(&key) {
            return Ok(Conn {
                sender,
                key,
                reused: true,
            });
        }
        self.connect(ep, key).await
    }

    /// A new connection, bypassing idle ones (after a pooled one failed).
    pub async fn connect_new(&self, ep: &Endpoint<'_>) -> Result<Conn, ProxyError> {
        self.connect(ep, ep.key()).await
    }

    fn take_idle(&self, key: &PoolKey) -> Option<Sender> {
        if key.h2 {
            let mut shared = self.shared.lock().expect("pool lock poisoned");
            match shared.get(key) {
                Some(s) if !s.is_closed() && s.is_ready() => return Some(Sender::H2(s.clone())),
                Some(_) => {
                    shared.remove(key);
                }
                None => {}
            }
            return None;
        }
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some((s, since)) = list.pop() {
            if s.is_ready() && !s.is_closed() && now - since < self.idle_timeout {
                return Some(Sender::H1(s));
            }
        }
        None
    }

    async fn connect(&self, ep: &Endpoint<'_>, key: PoolKey) -> Result<Conn, ProxyError> {
        let addr = format!("{}:{}", ep.host, ep.port);
        let work = async {
            let tcp = connect_tcp(ep.host, ep.port, &addr).await?;
            match ep.tls {
                None => handshake(tcp, ep.h2).await,
                Some((config, _, sni)) => {
                    let name = crate::tls::server_name(sni).map_err(|e| ProxyError::Tls {
                        addr: addr.clone(),
                        error: io::Error::new(io::ErrorKind::InvalidInput, e),
                    })?;
                    let tls = TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|error| ProxyError::Tls {
                            addr: addr.clone(),
                            error,
                        })?;
                    handshake(tls, ep.h2).await
                }
            }
        };
        let sender = timeout(ep.connect_timeout, work)
            .await
            .map_err(|_| ProxyError::ConnectTimeout { addr: addr.clone() })??;
        if let Sender::H2(s) = &sender {
            self.shared
                .lock()
                .expect("pool lock poisoned")
                .insert(key.clone(), s.clone());
        }
        Ok(Conn {
            sender,
            key,
            reused: false,
        })
    }

    /// Sends `req` on `conn`. An HTTP/1.1 connection goes back to the pool once the
    /// response body has been read.
    pub async fn send(
        self: &Arc<Self>,
        conn: Conn,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendFailure> {
        let Conn { sender, key, .. } = conn;
        match sender {
            Sender::H2(mut s) => s.try_send_request(req).await.map_err(|mut e| SendFailure {
                request: e.take_message(),
                error: e.into_error(),
            }),
            Sender::H1(mut s) => match s.try_send_request(req).await {
                Ok(resp) => {
                    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
                        self.recycle(key, s);
                    }
                    Ok(resp)
                }
                Err(mut e) => Err(SendFailure {
                    request: e.take_message(),
                    error: e.into_error(),
                }),
            },
        }
    }

    fn recycle(self: &Arc<Self>, key: PoolKey, mut s: http1::SendRequest<ProxyBody>) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            if s.ready().await.is_err() {
                return;
            }
            let Some(pool) = pool.upgrade() else { return };
            let mut idle = pool.idle.lock().expect("pool lock poisoned");
            let list = idle.entry(key).or_default();
            if list.len() < pool.max_idle_per_key {
                list.push((s, Instant::now()));
            }
        });
    }
}

async fn connect_tcp(host: &str, port: u16, label: &str) -> Result<TcpStream, ProxyError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|error| ProxyError::Resolve {
                host: host.to_string(),
                error,
            })?
            .collect(),
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(ProxyError::Connect {
        addr: label.to_string(),
        error: last,
    })
}

async fn handshake<I>(io: I, h2: bool) -> Result<Sender, ProxyError>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (s, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(ProxyError::Handshake)?;
        tokio::spawn(conn);
        Ok(Sender::H2(s))
    } else {
        let (s, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(ProxyError::Handshake)?;
        tokio::spawn(conn.with_upgrades());
        Ok(Sender::H1(s))
    }
}
