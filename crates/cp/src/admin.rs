//! The Kong-compatible Admin API over HTTP.
//!
//! ```text
//!  TcpListener ─accept─▶ hyper (HTTP/1.1, h2c) ─▶ routing: path + method ─▶ handler
//!                                                   ├─ entities: Backend::read / Backend::write(Op)
//!                                                   │   (bodies: JSON, or forms via form + coerce)
//!                                                   ├─ config: POST/GET /config (one Op::Import)
//!                                                   ├─ schemas, tags, info (/, /status, /endpoints)
//!                                                   └─ cluster: /clustering/control-planes
//!  shutdown ─▶ stop accepting, let in-flight requests finish (at most SHUTDOWN_GRACE)
//! ```
//!
//! Everything a Kong client parses is Kong's: status codes, `{"message":"Not found"}`,
//! error bodies from [`tidegate_model::KongError`], entity bodies from
//! [`tidegate_model::Entity::to_json`], pagination and tag filters. What is ours
//! (write errors, `X-Request-Id`, clustering) says so where it happens.
//!
//! Every entity of Kong 3.x's core and bundled plugins is served at Kong's paths, with
//! Kong's URL names for credentials (`/key-auths`, `/consumers/{c}/key-auth`); targets
//! only under their upstream.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, info, warn, Instrument};

use crate::backend::Backend;

mod certificates;
pub(crate) mod cluster;
mod coerce;
mod config;
mod entities;
mod form;
mod info;
mod pagination;
mod reply;
mod request;
mod routing;
mod schemas;
mod tags;

/// Largest request body accepted; larger ones get a 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest body of `POST /config`: a whole declarative file (a 10,000-service config is
/// a few MiB).
pub const MAX_CONFIG_BODY_BYTES: usize = tidegate_model::declarative::MAX_DECLARATIVE_BYTES;
/// Kong's default page size.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Kong's `max_page_size`.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Kong refuses tag filters with more tags than this.
pub const MAX_QUERY_TAGS: usize = 5;
/// How long in-flight requests may run after shutdown before their connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A client that has not sent its request headers within this time is disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error that is not about one connection (e.g. out of descriptors),
/// so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the Admin API on `listener` until `shutdown` resolves; then stops accepting and
/// waits for in-flight requests (at most [`SHUTDOWN_GRACE`]) before returning.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ctx = Arc::new(routing::Ctx::new(backend));
    serve_http(listener, "admin API", ctx, shutdown).await
}

/// What a server run by [`serve_http`] answers: the Admin API, and the cluster console.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send;
    fn connection_opened(&self) {}
    fn connection_closed(&self) {}
}

impl<B: Backend> Handler for routing::Ctx<B> {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        routing::handle(req, self).await
    }

    fn connection_opened(&self) {
        self.counters.connection_opened();
    }

    fn connection_closed(&self) {
        self.counters.connection_closed();
    }
}

/// The HTTP/1.1 and h2c server both of the CP's HTTP APIs run on, so that they share
/// its limits (header read timeout, graceful shutdown within [`SHUTDOWN_GRACE`]).
pub(crate) async fn serve_http<H: Handler>(
    listener: TcpListener,
    what: &'static str,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "{what} listening");
    }

    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => {
                debug!(error = %e, "accept failed for one connection");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "accept failed; pausing");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        handler.connection_opened();
        let svc_handler = handler.clone();
        let svc = service_fn(move |req| {
            let handler = svc_handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        let conn_handler = handler.clone();
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    debug!(error = %e, "connection ended with an error");
                }
                conn_handler.connection_closed();
            }
            .instrument(tracing::debug_span!("http_conn", server = what, %peer)),
        );
    }

    drop(listener);
    info!("{what} stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "{what} connections still open after the grace period; dropping them");
    }
    Ok(())
}

/// Errors that concern only the connection being accepted: the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests;
