//! The cluster console on `admin_gui_listen`: one read-only page that shows what this
//! CP knows about the cluster and refreshes itself.
//!
//! ```text
//!  browser ─GET /──────────▶ index.html, console.js, console.css (compiled in)
//!          ─GET /api/cluster (every 2 s) ─▶ view::cluster(node)
//!                 Raft metrics · ClusterStatus · DP table · entity counts · Event tail
//! ```
//!
//! The page builds its DOM with `textContent` only: entity names and DP hostnames are
//! user input. The Content-Security-Policy allows scripts and styles from this origin
//! only, so nothing inline runs even if a name slipped into markup. Served with the
//! Admin API's HTTP server ([`crate::admin::serve_http`]); request bodies are never read.

use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    SERVER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::admin::Handler;
use crate::backend::Backend;
use crate::node::RaftNode;

mod view;

pub use view::{MAX_DATA_PLANE_ROWS, RECENT_CHANGES, REFRESH_MS};

const INDEX_HTML: &str = include_str!("page/index.html");
const CONSOLE_JS: &str = include_str!("page/console.js");
const CONSOLE_CSS: &str = include_str!("page/console.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Serves the console for `node` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    node: Arc<RaftNode>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let version = node.node_info().tidegate_version;
    let server = HeaderValue::from_str(&format!("tidegate/{version}"))
        .unwrap_or_else(|_| HeaderValue::from_static("tidegate"));
    let console = Arc::new(Console { node, server });
    crate::admin::serve_http(listener, "cluster console", console, shutdown).await
}

struct Console {
    node: Arc<RaftNode>,
    server: HeaderValue,
}

impl Handler for Console {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = self.answer(req.method(), req.uri().path()).await;
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(SERVER, self.server.clone());
        // Every poll must show the current state, never a cached one.
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        resp
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Console {
    async fn answer(&self, method: &Method, path: &str) -> (StatusCode, &'static str, Bytes) {
        if method != Method::GET && method != Method::HEAD {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                Bytes::from_static(b"the cluster console is read-only\n"),
            );
        }
        let page =
            |ct, text: &'static str| (StatusCode::OK, ct, Bytes::from_static(text.as_bytes()));
        match path {
            "/" | "/index.html" => page("text/html; charset=utf-8", INDEX_HTML),
            "/console.js" => page("text/javascript; charset=utf-8", CONSOLE_JS),
            "/console.css" => page("text/css; charset=utf-8", CONSOLE_CSS),
            "/api/cluster" => {
                let body = view::cluster(&self.node).await.to_string();
                (
                    StatusCode::OK,
                    "application/json; charset=utf-8",
                    Bytes::from(body),
                )
            }
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                Bytes::from_static(b"not found\n"),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
