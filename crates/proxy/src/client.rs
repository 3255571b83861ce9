//! The upstream client: connections pooled per (host, port, TLS settings, SNI, HTTP
//! version), connect timeouts covering TCP and TLS, and requests handed back when a
//! pooled connection turns out closed before the request was written.
//!
//! HTTP/1.1 connections return to the pool when their response body has been read
//! (see [`Returner`]); HTTP/2 connections (grpc, grpcs) are shared.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
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

mod write_timeout;

pub use write_timeout::is_write_timeout;
use write_timeout::{Limit, WriteTimeout};

/// Kong's `upstream_keepalive_pool_size`.
pub const DEFAULT_MAX_IDLE_PER_KEY: usize = 512;
/// Kong's `upstream_keepalive_idle_timeout` (seconds).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Shared with the config, so making a key per request copies no string.
    host: Arc<str>,
    port: u16,
    tls: Option<(u64, Box<str>)>,
    h2: bool,
    /// An HTTP/2 connection carries many requests at once, so its write timeout is
    /// fixed for its life and part of its identity (services with other timeouts get
    /// their own connection); an HTTP/1.1 one takes each request's (0 here).
    h2_write_timeout_ms: u64,
}

/// Where and how to connect.
pub struct Endpoint<'a> {
    pub host: &'a Arc<str>,
    pub port: u16,
    /// Client config, its pool key and the SNI to send.
    pub tls: Option<(&'a Arc<ClientConfig>, u64, &'a str)>,
    pub h2: bool,
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
}

impl Endpoint<'_> {
    fn key(&self) -> PoolKey {
        PoolKey {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls.map(|(_, k, sni)| (k, sni.into())),
            h2: self.h2,
            h2_write_timeout_ms: if self.h2 {
                millis(self.write_timeout)
            } else {
                0
            },
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
    /// The connection's write timeout, set for the request about to be sent.
    write_limit: Limit,
    pub reused: bool,
}

/// A request that failed; `request` is handed back when it was never written.
pub struct SendFailure {
    pub error: hyper::Error,
    pub request: Option<Request<ProxyBody>>,
}

/// An idle HTTP/1.1 connection, its write limit, and when it became idle.
type Idle = (http1::SendRequest<ProxyBody>, Limit, Instant);

/// Looked up twice per proxied request (checkout and return): foldhash rather than
/// SipHash. Keys come from the config, except the SNI of a TLS service with
/// `preserve_host`, which is the client's Host; foldhash's seed is random per process,
/// so such keys cannot be chosen to collide ahead of time.
type ByKey<V> = HashMap<PoolKey, V, foldhash::fast::RandomState>;

pub struct Pool {
    idle: Mutex<IdleSet>,
    shared: Mutex<ByKey<(http2::SendRequest<ProxyBody>, Limit)>>,
    max_idle_per_key: usize,
    idle_timeout: Duration,
}

/// Idle HTTP/1.1 connections by key, swept now and then: a key is only looked at again
/// when a request goes its way, and keys come and go (targets leave the config, and a
/// TLS service with `preserve_host` keys by the client's Host), so without the sweep a
/// connection past its idle timeout, and its key, would stay for good.
struct IdleSet {
    by_key: ByKey<Vec<Idle>>,
    swept: Instant,
}

/// How often returning a connection also sweeps the whole pool.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

// === impl Pool ===

impl Pool {
    pub fn new(max_idle_per_key: usize, idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(IdleSet {
                by_key: ByKey::default(),
                swept: Instant::now(),
            }),
            shared: Mutex::new(ByKey::default()),
            max_idle_per_key,
            idle_timeout,
        })
    }

    /// A ready connection to `ep`: an idle pooled one, or a new one.
    pub async fn checkout(&self, ep: &Endpoint<'_>) -> Result<Conn, ProxyError> {
        let key = ep.key();
        if let Some((sender, write_limit)) = self.take_idle(&key) {
            return Ok(Conn {
                sender,
                key,
                write_limit,
                reused: true,
            });
        }
        self.connect(ep, key).await
    }

    /// A new connection, bypassing idle ones (after a pooled one failed).
    pub async fn connect_new(&self, ep: &Endpoint<'_>) -> Result<Conn, ProxyError> {
        self.connect(ep, ep.key()).await
    }

    fn take_idle(&self, key: &PoolKey) -> Option<(Sender, Limit)> {
        if key.h2 {
            let mut shared = self.shared.lock().expect("pool lock poisoned");
            match shared.get(key) {
                Some((s, l)) if !s.is_closed() && s.is_ready() => {
                    return Some((Sender::H2(s.clone()), l.clone()))
                }
                Some(_) => {
                    shared.remove(key);
                }
                None => {}
            }
            return None;
        }
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        let list = idle.by_key.get_mut(key)?;
        let now = Instant::now();
        while let Some((s, l, since)) = list.pop() {
            if s.is_ready() && !s.is_closed() && now - since < self.idle_timeout {
                return Some((Sender::H1(s), l));
            }
        }
        None
    }

    async fn connect(&self, ep: &Endpoint<'_>, key: PoolKey) -> Result<Conn, ProxyError> {
        let addr = format!("{}:{}", ep.host, ep.port);
        // The handshake's own writes are bounded by the service's limit too.
        let write_limit = Limit::new(millis(ep.write_timeout).into());
        let work = async {
            let tcp = connect_tcp(ep.host, ep.port, &addr).await?;
            let tcp = WriteTimeout::new(tcp, write_limit.clone());
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
                .insert(key.clone(), (s.clone(), write_limit.clone()));
        }
        Ok(Conn {
            sender,
            key,
            write_limit,
            reused: false,
        })
    }

    /// Sends `req` on `conn`. For an HTTP/1.1 connection that can carry another
    /// request, the [`Returner`] gives it back to the pool once the response body has
    /// been read.
    pub async fn send(
        self: &Arc<Self>,
        conn: Conn,
        req: Request<ProxyBody>,
        write_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<Returner>), SendFailure> {
        let Conn {
            sender,
            key,
            write_limit,
            ..
        } = conn;
        if matches!(sender, Sender::H1(_)) {
            write_limit.store(millis(write_timeout), std::sync::atomic::Ordering::Relaxed);
        }
        match sender {
            Sender::H2(mut s) => match s.try_send_request(req).await {
                Ok(resp) => Ok((resp, None)),
                Err(mut e) => Err(SendFailure {
                    request: e.take_message(),
                    error: e.into_error(),
                }),
            },
            Sender::H1(mut s) => {
                match s.try_send_request(req).await {
                    Ok(resp) => {
                        // After a 101 the connection belongs to the upgraded stream.
                        let returner = (resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS)
                            .then(|| Returner {
                                pool: Arc::downgrade(self),
                                key,
                                write_limit,
                                sender: s,
                            });
                        Ok((resp, returner))
                    }
                    Err(mut e) => Err(SendFailure {
                        request: e.take_message(),
                        error: e.into_error(),
                    }),
                }
            }
        }
    }

    fn put_idle(&self, key: PoolKey, s: http1::SendRequest<ProxyBody>, limit: Limit) {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        let list = idle.by_key.entry(key).or_default();
        if list.len() < self.max_idle_per_key {
            list.push((s, limit, now));
        }
        if now - idle.swept >= SWEEP_EVERY {
            idle.swept = now;
            let timeout = self.idle_timeout;
            // Dropping a sender closes its connection.
            idle.by_key.retain(|_, list| {
                list.retain(|(s, _, since)| !s.is_closed() && now - *since < timeout);
                !list.is_empty()
            });
            self.shared
                .lock()
                .expect("pool lock poisoned")
                .retain(|_, (s, _)| !s.is_closed());
        }
    }

    /// Keys with idle HTTP/1.1 connections, and those connections.
    #[cfg(test)]
    fn idle_counts(&self) -> (usize, usize) {
        let idle = self.idle.lock().expect("pool lock poisoned");
        (idle.by_key.len(), idle.by_key.values().map(Vec::len).sum())
    }
}

/// An HTTP/1.1 connection on its way back to the pool, carried by the response body.
///
/// hyper's connection becomes ready for the next request once it has read the whole
/// response; by the time the body reports its end, it usually is, and the connection
/// goes straight back. Only when it is not does a task wait for it (hyper's own
/// pooled client spawns that task for every request).
pub struct Returner {
    pool: Weak<Pool>,
    key: PoolKey,
    write_limit: Limit,
    sender: http1::SendRequest<ProxyBody>,
}

impl Returner {
    pub fn give_back(self) {
        let Returner {
            pool,
            key,
            write_limit,
            mut sender,
        } = self;
        if sender.is_closed() {
            return;
        }
        if sender.is_ready() {
            if let Some(pool) = pool.upgrade() {
                pool.put_idle(key, sender, write_limit);
            }
            return;
        }
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            if let Some(pool) = pool.upgrade() {
                pool.put_idle(key, sender, write_limit);
            }
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP/1.1 sender over an in-memory pipe whose other end `peer` keeps open.
    async fn sender() -> (http1::SendRequest<ProxyBody>, tokio::io::DuplexStream) {
        let (ours, peer) = tokio::io::duplex(1024);
        let Sender::H1(s) = handshake(ours, false).await.expect("handshake") else {
            unreachable!("asked for HTTP/1.1")
        };
        (s, peer)
    }

    fn key(host: &str) -> PoolKey {
        PoolKey {
            host: host.into(),
            port: 80,
            tls: None,
            h2: false,
            h2_write_timeout_ms: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connections_past_their_idle_timeout_and_their_keys_are_swept() {
        let pool = Pool::new(8, Duration::from_secs(60));
        let (a, _pa) = sender().await;
        let (b, _pb) = sender().await;
        pool.put_idle(key("a"), a, Limit::new(0.into()));
        pool.put_idle(key("b"), b, Limit::new(0.into()));
        assert_eq!(pool.idle_counts(), (2, 2));
        // Within the idle timeout a return sweeps nothing that is still good.
        tokio::time::advance(Duration::from_secs(30)).await;
        let (c, _pc) = sender().await;
        pool.put_idle(key("c"), c, Limit::new(0.into()));
        assert_eq!(pool.idle_counts(), (3, 3));
        // Past it, the next return (after a second) drops a and b, and their keys.
        tokio::time::advance(Duration::from_secs(31)).await;
        let (d, _pd) = sender().await;
        pool.put_idle(key("d"), d, Limit::new(0.into()));
        assert_eq!(pool.idle_counts(), (2, 2));
        assert!(pool.take_idle(&key("a")).is_none());
        assert!(pool.take_idle(&key("c")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn closed_connections_are_swept() {
        let pool = Pool::new(8, Duration::from_secs(60));
        let (a, peer) = sender().await;
        drop(peer);
        // Until the connection task has seen the pipe close; bounded, since with paused
        // time a busy loop would never let a timeout fire.
        for _ in 0..1000 {
            if a.is_closed() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(a.is_closed(), "the sender sees its connection close");
        pool.put_idle(key("a"), a, Limit::new(0.into()));
        tokio::time::advance(SWEEP_EVERY).await;
        let (b, _pb) = sender().await;
        pool.put_idle(key("b"), b, Limit::new(0.into()));
        assert_eq!(pool.idle_counts(), (1, 1));
    }
}
