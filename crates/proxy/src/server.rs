//! Listeners and connections: accept (bounded per listener), TLS with SNI and ALPN on
//! `ssl` listeners, HTTP/1.1 and HTTP/2 through hyper-util's auto builder, upgrades, and
//! graceful shutdown (stop accepting, let requests in flight finish within a grace
//! period).

use std::future::Future;
use std::io;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::proxy::{handle, ConnInfo, Inner};
use crate::tls::{self, SniResolver};

/// A bound proxy listener with its `proxy_listen` flags.
pub struct Bound {
    pub listener: TcpListener,
    pub ssl: bool,
    pub http2: bool,
}

struct Builders {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
    /// h1, or h2 with prior knowledge (h2c).
    both: auto::Builder<TokioExecutor>,
}

fn builders(inner: &Inner) -> Builders {
    let o = &inner.options;
    let make = || {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(o.header_read_timeout)
            .max_buf_size(o.max_header_bytes.max(8192))
            .max_headers(o.max_headers);
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(o.max_header_bytes).unwrap_or(u32::MAX));
        b
    };
    Builders {
        h1: make().http1_only(),
        h2: make().http2_only(),
        both: make(),
    }
}

/// Serves every listener until `shutdown` resolves, then waits for connections to
/// finish (at most `shutdown_grace`).
pub async fn run(
    inner: Arc<Inner>,
    resolver: Arc<SniResolver>,
    listeners: Vec<Bound>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let builders = Arc::new(builders(&inner));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut accept_tasks = Vec::new();
    for l in listeners {
        let acceptor = if l.ssl {
            let cfg = tls::server_config(resolver.clone(), l.http2)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            Some(TlsAcceptor::from(cfg))
        } else {
            None
        };
        let a = Accept {
            inner: inner.clone(),
            builders: builders.clone(),
            acceptor,
            http2: l.http2,
            limit: Arc::new(Semaphore::new(inner.options.max_connections.max(1))),
            stop: stop_rx.clone(),
            done: done_tx.clone(),
        };
        accept_tasks.push(tokio::spawn(a.run(l.listener)));
    }
    drop(done_tx);
    shutdown.await;
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        let _ = t.await;
    }
    // Every connection task holds a `done` sender: recv() ends when the last one ends.
    let _ = tokio::time::timeout(inner.options.shutdown_grace, done_rx.recv()).await;
    Ok(())
}

struct Accept {
    inner: Arc<Inner>,
    builders: Arc<Builders>,
    acceptor: Option<TlsAcceptor>,
    http2: bool,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
}

impl Accept {
    async fn run(mut self, listener: TcpListener) {
        loop {
            let permit = tokio::select! {
                p = self.limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = self.stop.changed() => return,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.stop.changed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let local = match tcp.local_addr() {
                Ok(a) => a,
                Err(_) => continue,
            };
            let inner = self.inner.clone();
            let builders = self.builders.clone();
            let acceptor = self.acceptor.clone();
            let http2 = self.http2;
            let stop = self.stop.clone();
            let done = self.done.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _done = done;
                match acceptor {
                    None => {
                        let info = ConnInfo::new(peer, local, false, None);
                        let b = if http2 { &builders.both } else { &builders.h1 };
                        serve(b, tcp, inner, info, stop).await;
                    }
                    Some(acceptor) => {
                        let limit = inner.options.handshake_timeout;
                        let tls = match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let (_, session) = tls.get_ref();
                        let sni = session.server_name().map(str::to_ascii_lowercase);
                        let h2 = session.alpn_protocol() == Some(b"h2");
                        let info = ConnInfo::new(peer, local, true, sni);
                        let b = if h2 { &builders.h2 } else { &builders.h1 };
                        serve(b, tls, inner, info, stop).await;
                    }
                }
            });
        }
    }
}

async fn serve<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    inner: Arc<Inner>,
    info: ConnInfo,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let info = Arc::new(info);
    let svc = service_fn(move |req| handle(inner.clone(), info.clone(), req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
