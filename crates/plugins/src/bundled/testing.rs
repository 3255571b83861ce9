//! Scaffolding shared by the bundled plugins' unit tests: typed configs from JSON,
//! requests, contexts, running the access phase and reading what it answered.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};

use crate::body::RequestBody;
use crate::consumers::Consumers;
use crate::context::{Ctx, Protocol, Req};
use crate::phase::{Access, Exit, ExitBody, Flow, Plugin};

/// The `PluginConfig::$variant` config of plugin `$name` read from the JSON `$config`;
/// a config that does not read panics.
macro_rules! typed_config {
    ($variant:ident, $name:expr, $config:expr) => {{
        let config: serde_json::Value = $config;
        let Some(Ok(tidegate_model::plugins::PluginConfig::$variant(c))) =
            tidegate_model::plugins::PluginConfig::read($name, Some(&config))
        else {
            panic!("invalid test config {config}");
        };
        c
    }};
}
pub(crate) use typed_config;

/// A header map of `headers`, in order, repeated names appended.
pub(crate) fn headers(headers: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

/// A buffered request body of `body`.
pub(crate) fn buffered(body: &str) -> RequestBody {
    RequestBody::Buffered(Bytes::from(body.to_string()))
}

/// A request to `path` and `query` with `headers` and `body`.
pub(crate) fn req(
    method: Method,
    path: &str,
    query: Option<&str>,
    headers: &[(&str, &str)],
    body: RequestBody,
) -> Req {
    Req {
        method,
        path: path.into(),
        query: query.map(str::to_string),
        headers: self::headers(headers),
        body,
        upstream_path: None,
    }
}

/// A context for a request from `client`.
pub(crate) fn cx_from(consumers: &Consumers, client: IpAddr) -> Ctx<'_> {
    Ctx::new("id", client, Protocol::Http, consumers, 0.0)
}

/// A context for a request from 127.0.0.1.
pub(crate) fn cx(consumers: &Consumers) -> Ctx<'_> {
    cx_from(consumers, "127.0.0.1".parse().unwrap())
}

/// Runs the access phase, waiting for it when it is pending.
pub(crate) async fn access<P: Plugin + ?Sized>(p: &P, cx: &mut Ctx<'_>, req: &mut Req) -> Flow {
    match p.access(cx, req) {
        Access::Done(f) => f,
        Access::Pending(f) => f.await,
    }
}

/// Runs the access phase of a plugin that decides at once; `what` names it when it
/// does not.
pub(crate) fn access_now<P: Plugin + ?Sized>(
    p: &P,
    cx: &mut Ctx<'_>,
    req: &mut Req,
    what: &str,
) -> Flow {
    match p.access(cx, req) {
        Access::Done(f) => f,
        Access::Pending(_) => panic!("{what} decides at once"),
    }
}

/// The message of a `kong.response.error` exit; any other body panics.
pub(crate) fn error_message(e: &Exit) -> &str {
    match &e.body {
        ExitBody::Error(m) => m,
        other => panic!("not kong.response.error: {other:?}"),
    }
}

/// `None` when the flow continues, else the status and message of its error exit.
pub(crate) fn error_exit(flow: Flow) -> Option<(u16, String)> {
    match flow {
        Flow::Continue => None,
        Flow::Exit(e) => Some((e.status.as_u16(), error_message(&e).to_string())),
    }
}

/// The values of header `name`, in order.
pub(crate) fn values<'h>(h: &'h HeaderMap, name: &str) -> Vec<&'h str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// The head of a response with `headers`.
pub(crate) fn response_parts(headers: &[(&str, &str)]) -> http::response::Parts {
    let mut b = http::Response::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}
