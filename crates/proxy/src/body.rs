//! Body types: what the proxy sends both ways, and the upstream response body with
//! Kong's `read_timeout` between reads and the balancer's in-flight slot held until the
//! body ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

use crate::balancer::InFlight;
use crate::client::Returner;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request bodies sent upstream and response bodies sent to clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn incoming(body: Incoming) -> ProxyBody {
    body.map_err(BoxError::from).boxed_unsync()
}

/// An upstream response body: fails when no frame arrives within `read_timeout`,
/// releases the target's in-flight slot when it ends or is dropped, and gives its
/// HTTP/1.1 connection back to the pool once read to the end.
pub struct UpstreamBody {
    inner: Incoming,
    read_timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    in_flight: Option<InFlight>,
    returner: Option<Returner>,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream timed out reading the response body")]
pub struct BodyReadTimeout;

impl UpstreamBody {
    pub fn new(
        inner: Incoming,
        read_timeout: Duration,
        in_flight: Option<InFlight>,
        returner: Option<Returner>,
    ) -> Self {
        let mut body = UpstreamBody {
            inner,
            read_timeout,
            idle: None,
            in_flight,
            returner,
        };
        // A body that is empty from the start (HEAD, 204, 304) may never be polled.
        body.give_back_if_read();
        body
    }

    /// Servers stop polling a body that says it has ended, so for a body of known
    /// length the end is noticed on the last frame rather than on a `None` that may
    /// never be asked for. (A chunked body only says so with its `None` or trailers.)
    fn give_back_if_read(&mut self) {
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }

    /// The body has been read to its end: the connection may carry the next request.
    fn give_back(&mut self) {
        if let Some(r) = self.returner.take() {
            r.give_back();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Dropped unread, the connection is dropped with it: hyper closes it.
        self.give_back_if_read();
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle = None;
                match &frame {
                    // Trailers are the last frame of a chunked body.
                    Some(Ok(f)) if f.is_trailers() => this.give_back(),
                    Some(Ok(_)) => this.give_back_if_read(),
                    None => {
                        this.in_flight = None;
                        this.give_back();
                    }
                    Some(Err(_)) => {
                        this.in_flight = None;
                        this.returner = None;
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => {
                let timeout = this.read_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.in_flight = None;
                        Poll::Ready(Some(Err(Box::new(BodyReadTimeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
