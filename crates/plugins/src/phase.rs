//! The phases a plugin may take part in, after Kong's (and Pingora's `ProxyHttp`):
//! access before the upstream is chosen, response headers, the response body, log.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::context::{Ctx, Req};

pub type PhaseFuture<'a> = Pin<Box<dyn Future<Output = Flow> + Send + 'a>>;

/// What the access phase decided.
pub enum Flow {
    Continue,
    /// Answer the client now (Kong's `kong.response.exit`); later plugins' access does
    /// not run, earlier ones still see the response in their response phases.
    Exit(Exit),
}

/// The access phase's result: most plugins decide at once and allocate nothing; a
/// plugin that must wait (a redis round trip) returns a future.
pub enum Access<'a> {
    Done(Flow),
    Pending(PhaseFuture<'a>),
}

impl Access<'_> {
    pub const CONTINUE: Access<'static> = Access::Done(Flow::Continue);

    pub fn exit(e: Exit) -> Self {
        Access::Done(Flow::Exit(e))
    }
}

/// A response a plugin produces itself.
#[derive(Debug)]
pub struct Exit {
    pub status: StatusCode,
    pub body: ExitBody,
    pub headers: HeaderMap,
}

#[derive(Debug)]
pub enum ExitBody {
    Empty,
    /// Kong's `kong.response.error`: `{"message": …, "request_id": …}`.
    Error(String),
    /// Kong's `kong.response.exit` with a table: the value as JSON, nothing added.
    Json(serde_json::Value),
    /// A body as given, with its content type.
    Raw {
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
}

impl Exit {
    /// Kong's `kong.response.error(status, message)`.
    pub fn error(status: u16, message: impl Into<String>) -> Exit {
        Exit {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ExitBody::Error(message.into()),
            headers: HeaderMap::new(),
        }
    }

    /// Kong's `kong.response.exit(status, table)`.
    pub fn json(status: u16, value: serde_json::Value) -> Exit {
        Exit {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ExitBody::Json(value),
            headers: HeaderMap::new(),
        }
    }

    pub fn empty(status: u16) -> Exit {
        Exit {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ExitBody::Empty,
            headers: HeaderMap::new(),
        }
    }

    /// Adds a header; a name or value that is not valid HTTP is left out (plugin
    /// configs are validated on the CP, so that only happens with hand-made instances).
    pub fn header(mut self, name: &str, value: &str) -> Exit {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.append(n, v);
        }
        self
    }
}

/// One plugin instance: a plugin with its config for one scope, built once per config
/// version. Every phase has a default that does nothing, so a plugin implements only the
/// phases it takes part in.
///
/// Custom plugins implement this trait and a [`crate::Factory`], and are registered in
/// the binary's [`crate::Registry`].
pub trait Plugin: Send + Sync + 'static {
    /// Before the upstream is chosen: authenticate, limit, transform or answer.
    fn access<'a>(&'a self, _cx: &'a mut Ctx<'_>, _req: &'a mut Req) -> Access<'a> {
        Access::CONTINUE
    }

    /// The response's status and headers, from the upstream or from an exit.
    fn response_headers(&self, _cx: &mut Ctx<'_>, _resp: &mut http::response::Parts) {}

    /// Whether [`Plugin::response_body`] needs the whole body of this response. The
    /// proxy buffers it (up to a limit) only when some plugin says yes.
    fn wants_response_body(&self, _cx: &Ctx<'_>, _resp: &http::response::Parts) -> bool {
        false
    }

    /// The whole response body, after `response_headers`.
    fn response_body(&self, _cx: &mut Ctx<'_>, _resp: &http::response::Parts, _body: &mut Bytes) {}

    /// After the response head is known; for counting and logging.
    fn log(&self, _cx: &Ctx<'_>, _resp: &http::response::Parts) {}
}
