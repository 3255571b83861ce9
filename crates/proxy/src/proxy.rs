//! One proxied request, in Kong's order:
//!
//! ```text
//! request ─▶ router.find ─▶ protocol check (426 / redirect) ─▶ service ─▶ upstream URI,
//!   Host and X-Forwarded-* ─▶ ┌ pick target (balancer) ─▶ connect (connect_timeout) ┐
//!                              └──── retry on a failure before the request left ◀─┘
//!   ─▶ response headers within read_timeout ─▶ Via, latency headers ─▶ client
//! ```
//!
//! Every failure is a [`ProxyError`], turned into Kong's status and JSON body in
//! [`error_response`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tidegate_router::{Headers, Match, ProtocolCheck, RequestView, Scheme};
use tokio::time::{timeout, Instant};

use crate::balancer::{Balancer, HashOn, InFlight, Outcome};
use crate::body::{self, ProxyBody, UpstreamBody};
use crate::client::{Endpoint, Pool, Returner};
use crate::config::{Live, ProxyConfig, ServiceInfo};
use crate::error::ProxyError;
use crate::options::{HeaderNaming, ProxyOptions};

use hyper::body::Bytes;
use tidegate_plugins::{
    Ctx, Exit, ExitBody, PluginSet, Protocol, Ran, Req, RequestBody, ResponseSource,
};

const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
/// Our `Via` token (Kong sends `1.1 kong/<version>`).
const VIA: &str = concat!("1.1 tidegate/", env!("CARGO_PKG_VERSION"));

/// Shared by every connection of a proxy.
pub struct Inner {
    pub live: Arc<Live>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub pool: Arc<Pool>,
    pub options: ProxyOptions,
    pub ids: RequestIds,
}

/// What the request path knows about the connection a request came on, with the
/// header values every request on it forwards, made once per connection.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    pub sni: Option<String>,
    /// The peer's address as `X-Real-IP` / `X-Forwarded-For` carry it.
    peer_ip: HeaderValue,
    /// The local port as `X-Forwarded-Port` carries it.
    local_port: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool, sni: Option<String>) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        ConnInfo {
            peer,
            tls,
            sni,
            peer_ip,
            local_port: HeaderValue::from(local.port()),
        }
    }
}

/// Kong's request ids: 32 hex digits, unique per process. Derived from a seed the
/// caller supplies (no hidden randomness) and a counter, through a bijection.
pub struct RequestIds {
    seed: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new(seed: u64) -> Self {
        RequestIds {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> RequestId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let a = splitmix(self.seed ^ n);
        let b = splitmix(a ^ self.seed.rotate_left(17));
        let mut hex = [0u8; 32];
        for (i, byte) in a
            .to_be_bytes()
            .into_iter()
            .chain(b.to_be_bytes())
            .enumerate()
        {
            hex[2 * i] = HEX[usize::from(byte >> 4)];
            hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        RequestId(hex)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One request id, kept on the stack: it is made for every request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 32]);

impl RequestId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are UTF-8")
    }

    fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).expect("hex digits are a valid header value")
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1, plus the
/// legacy ones nginx drops). A static, not a const: a const array of `HeaderName`s is
/// built and dropped at every use.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// The service function: never fails, every error becomes Kong's response.
pub async fn handle(
    inner: Arc<Inner>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let config = inner.live.load();
    let id = inner.ids.next();
    let request_id = id.as_str();
    let cx = Cx {
        inner: &inner,
        config: &config,
        conn: &conn,
        request_id,
        start,
        grpc: is_grpc(req.headers()),
    };
    let mut matched = None;
    let mut resp = match cx.proxy(req, &mut matched).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, source = ?e.source(), request_id, "request failed");
            match e {
                ProxyError::GrpcsRequired => grpcs_required(),
                e => cx.exit(e.status(), Some(e.message())),
            }
        }
    };
    let names = inner.options.header_naming;
    resp.headers_mut()
        .insert(names.request_id(), id.header_value());
    inner
        .metrics
        .record(matched, resp.status().as_u16(), start.elapsed());
    Ok(resp)
}

struct Cx<'a> {
    inner: &'a Arc<Inner>,
    config: &'a ProxyConfig,
    conn: &'a ConnInfo,
    request_id: &'a str,
    start: Instant,
    /// A gRPC request: the proxy's and plugins' own answers are gRPC-shaped, as
    /// Kong's `kong.response` makes them.
    grpc: bool,
}

/// Who a request is from, after `trusted_ips`.
struct Client {
    ip: IpAddr,
    /// `ip` as `X-Real-IP` and `X-Forwarded-For` carry it.
    value: HeaderValue,
    /// The peer is a trusted proxy: the forwarding headers it sent are passed on.
    trusted: bool,
    /// The scheme the client used, as Kong's protocol checks take it.
    https: bool,
}

/// An upstream's answer and what the response path needs about how it came.
struct Sent {
    resp: Response<Incoming>,
    /// Gives an HTTP/1.1 connection back to the pool once the body is read.
    returner: Option<Returner>,
    in_flight: Option<InFlight>,
    upstream_latency: Duration,
    proxy_latency: Duration,
}

struct HeaderView<'a>(&'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.0
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(&mut *pred))
    }
}

impl Cx<'_> {
    /// Proxies `req`; `matched_route` is set to the route (and its service) matched,
    /// for the metrics, whatever the outcome.
    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        matched_route: &mut Option<(uuid::Uuid, Option<uuid::Uuid>)>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // Owned handles on the request's Host and target (reference-counted clones of
        // hyper's buffers, not copies): the request itself moves on below.
        let uri = req.uri().clone();
        let host_header = req.headers().get(header::HOST).cloned();
        let host = host_header
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let matched = {
            let view = RequestView {
                method: req.method().as_str(),
                host,
                path: target,
                headers: &HeaderView(req.headers()),
                sni: self.conn.sni.as_deref(),
                scheme: if self.conn.tls {
                    Scheme::Https
                } else {
                    Scheme::Http
                },
            };
            self.config.router.find(&view)
        };
        let m = matched.ok_or(ProxyError::NoRoute)?;
        *matched_route = Some((m.route.id, m.route.service_id));
        let client = self.client(req.headers());
        match m.protocol_check(client.https) {
            ProtocolCheck::Proceed => {}
            ProtocolCheck::HttpsRequired { status } => {
                return Ok(self.https_required(status, host, target, req.version()))
            }
            ProtocolCheck::GrpcsRequired => return Err(ProxyError::GrpcsRequired),
        }
        let service = m
            .route
            .service_id
            .and_then(|id| self.config.services.get(&id))
            .ok_or(ProxyError::NoService)?
            .clone();

        let limits = &self.inner.options;
        if let Some(limit) = limits.max_request_body {
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(ProxyError::BodyTooLarge { limit });
            }
        }

        // An upgrade (websocket) is passed through once the upstream agrees.
        let upgrade = is_upgrade(req.headers()) && req.version() == Version::HTTP_11;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, incoming) = req.into_parts();
        let mut body = match limits.max_request_body {
            Some(limit) => Limited::new(incoming, limit as usize)
                .map_err(body::BoxError::from)
                .boxed_unsync(),
            None => body::incoming(incoming),
        };
        let mut query = parts.uri.query().map(str::to_string);
        let mut path_override = None;
        let mut host_override = None;

        // The access phase; its instances take part in the response phases.
        let plugins = &self.config.plugins;
        let mut run = None;
        if !plugins.is_empty() {
            let grpc = is_grpc(&parts.headers);
            let protocol = match (self.conn.tls, grpc) {
                (false, false) => Protocol::Http,
                (true, false) => Protocol::Https,
                (false, true) => Protocol::Grpc,
                (true, true) => Protocol::Grpcs,
            };
            let mut cx = Ctx::new(
                self.request_id,
                client.ip,
                protocol,
                plugins.consumers(),
                (self.inner.options.wall_clock)(),
            );
            cx.route_id = Some(m.route.id);
            cx.service_id = Some(service.id);
            let host_before = parts.headers.get(header::HOST).cloned();
            let mut preq = Req {
                method: parts.method.clone(),
                path: target.split('?').next().unwrap_or("/").to_string(),
                query: query.take(),
                headers: std::mem::take(&mut parts.headers),
                body: RequestBody::stream(body),
                upstream_path: None,
            };
            let (ran, exit) = plugins.access(&mut cx, &mut preq).await;
            if let Some(e) = exit {
                cx.response_source = ResponseSource::Exit;
                return Ok(self.plugin_exit(e, &ran, &mut cx));
            }
            parts.method = preq.method;
            parts.headers = preq.headers;
            query = preq.query;
            path_override = preq.upstream_path;
            // A Host a plugin set (request-transformer's `replace.headers`) is the
            // upstream Host, as `kong.service.request.set_header("Host")` sets Kong's
            // `upstream_host`.
            host_override = parts
                .headers
                .get(header::HOST)
                .filter(|h| Some(*h) != host_before.as_ref())
                .and_then(|h| h.to_str().ok())
                .map(str::to_string);
            body = preq.body.into_body();
            run = Some((cx, ran));
        }
        let consumer = run
            .as_ref()
            .and_then(|(cx, _)| cx.consumer.as_ref().map(|c| c.id));

        let path = path_override
            .unwrap_or_else(|| tidegate_router::upstream_path(&m, service.path.as_deref()));
        let mut path_and_query = escape_path(&path);
        if let Some(q) = query.as_deref().filter(|q| !q.is_empty()) {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        let (hash, set_cookie) = match service.balancer.as_ref().filter(|b| b.uses_hash()) {
            Some(b) => self.hash_value(b, &parts, &m, query.as_deref(), consumer, client.ip),
            None => (None, None),
        };
        self.forwarded_headers(&mut parts.headers, host, target, &m, &client);
        strip_hop_by_hop(&mut parts.headers, upgrade);
        let mut outbound = Request::from_parts(parts, body);
        if upgrade {
            let h = outbound.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let preserve = host_override
            .as_deref()
            .or(m.route.preserve_host.then_some(host).flatten());
        let Sent {
            mut resp,
            returner,
            in_flight,
            upstream_latency,
            proxy_latency,
        } = match self
            .send_with_retries(
                &service,
                outbound,
                path_and_query,
                preserve,
                hash.as_deref(),
            )
            .await
        {
            Ok(sent) => sent,
            Err(e) => return self.failed(e, run),
        };

        if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let (Ok(up), Ok(down)) = (upstream.await, client.await) else {
                    return;
                };
                let (mut up, mut down) = (TokioIo::new(up), TokioIo::new(down));
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                drop(in_flight);
            });
            let (mut parts, _) = resp.into_parts();
            self.response_headers(&mut parts.headers, upstream_latency, proxy_latency);
            if let Some((mut cx, ran)) = run {
                PluginSet::response_headers(&ran, &mut cx, &mut parts);
                PluginSet::log(&ran, &cx, &parts);
            }
            return Ok(Response::from_parts(parts, body::empty()));
        }

        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        self.response_headers(&mut parts.headers, upstream_latency, proxy_latency);
        if let Some(cookie) = set_cookie {
            parts.headers.append(header::SET_COOKIE, cookie);
        }
        let body =
            UpstreamBody::new(incoming, service.read_timeout, in_flight, returner).boxed_unsync();
        let Some((mut cx, ran)) = run else {
            return Ok(Response::from_parts(parts, body));
        };
        PluginSet::response_headers(&ran, &mut cx, &mut parts);
        let body = if PluginSet::wants_response_body(&ran, &cx, &parts) {
            let limit = self.inner.options.max_buffered_response;
            let mut bytes = match tidegate_plugins::collect(body, limit).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, limit, "upstream body not transformed: reading it failed or it is larger than the limit");
                    return self.failed(ProxyError::BadResponseBody, Some((cx, ran)));
                }
            };
            PluginSet::response_body(&ran, &mut cx, &parts, &mut bytes);
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            body::full(bytes)
        } else {
            body
        };
        PluginSet::log(&ran, &cx, &parts);
        Ok(Response::from_parts(parts, body))
    }

    /// A failure after the access phase: Kong's error response, through the response
    /// phases of the plugins that apply (cors headers on a 502, as in Kong).
    fn failed(
        &self,
        e: ProxyError,
        run: Option<(Ctx<'_>, Ran)>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let Some((mut cx, ran)) = run else {
            return Err(e);
        };
        tracing::debug!(error = %e, source = ?e.source(), request_id = self.request_id, "request failed");
        cx.response_source = ResponseSource::Proxy;
        let (mut parts, body) = self.exit(e.status(), Some(e.message())).into_parts();
        PluginSet::response_headers(&ran, &mut cx, &mut parts);
        PluginSet::log(&ran, &cx, &parts);
        Ok(Response::from_parts(parts, body))
    }

    /// A plugin's own response (Kong's `kong.response.exit` / `kong.response.error`),
    /// through the response phases of the plugins that ran.
    fn plugin_exit(&self, e: Exit, ran: &Ran, cx: &mut Ctx<'_>) -> Response<ProxyBody> {
        if self.grpc {
            return self.grpc_plugin_exit(e, ran, cx);
        }
        let (content_type, mut bytes) = match e.body {
            ExitBody::Empty => (None, None),
            ExitBody::Error(msg) => {
                let json = serde_json::json!({"message": msg, "request_id": self.request_id});
                (Some(JSON), Some(Bytes::from(format!("{json}\n"))))
            }
            ExitBody::Json(v) => (Some(JSON), Some(Bytes::from(v.to_string()))),
            ExitBody::Raw { content_type, body } => (content_type, Some(body)),
        };
        let mut resp = self.exit(e.status, None);
        let (mut parts, _) = resp.into_parts();
        if let Some(ct) = content_type {
            parts.headers.insert(header::CONTENT_TYPE, ct);
        }
        for (name, value) in e.headers.iter() {
            parts.headers.append(name.clone(), value.clone());
        }
        PluginSet::response_headers(ran, cx, &mut parts);
        if let Some(b) = bytes.as_mut() {
            if PluginSet::wants_response_body(ran, cx, &parts) {
                PluginSet::response_body(ran, cx, &parts, b);
            }
        }
        PluginSet::log(ran, cx, &parts);
        resp = Response::from_parts(parts, bytes.map_or_else(body::empty, body::full));
        resp
    }

    /// Picks a target and sends, retrying (up to `service.retries` more times) on
    /// failures that happened before the request was written.
    async fn send_with_retries(
        &self,
        service: &Arc<ServiceInfo>,
        mut req: Request<ProxyBody>,
        path_and_query: String,
        preserve_host: Option<&str>,
        hash: Option<&str>,
    ) -> Result<Sent, ProxyError> {
        let tries = service.retries.saturating_add(1);
        let h2 = service.protocol.is_h2();
        // HTTP/1.1 sends the origin form, the same on every attempt: parsed once, and
        // cloning a `Uri` only counts references.
        let origin_form = if h2 {
            None
        } else {
            Some(
                Uri::try_from(path_and_query.as_str())
                    .map_err(|_| ProxyError::BadUpstreamUri(path_and_query.clone()))?,
            )
        };
        let preserved = preserve_host.and_then(|h| HeaderValue::from_str(h).ok());
        let mut tried: Vec<usize> = Vec::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (host, port, target) = match &service.balancer {
                Some(b) => {
                    let i = b.pick(hash, &tried).ok_or(ProxyError::NoPeer)?;
                    tried.push(i);
                    let t = &b.targets[i];
                    (&t.host, t.port, Some((b, i)))
                }
                None => (&service.host, service.port, None),
            };
            // Kong's `set_host_header`: the preserved Host, else the upstream's
            // host_header, else the target's (or service's) host and port, all but the
            // first made with the config.
            let host_value = match (&preserved, target) {
                (Some(h), _) => Some(h.clone()),
                (None, Some((b, i))) => b
                    .host_header
                    .clone()
                    .or_else(|| b.targets[i].host_header(service.protocol.is_tls())),
                (None, None) => service.host_header.clone(),
            };
            let upstream_host = host_value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let ep = Endpoint {
                host,
                port,
                tls: service
                    .tls
                    .as_ref()
                    .map(|(c, k)| (c, *k, strip_port(upstream_host))),
                h2,
                connect_timeout: service.connect_timeout,
                write_timeout: service.write_timeout,
            };
            *req.uri_mut() = match &origin_form {
                Some(uri) => uri.clone(),
                None => {
                    let scheme = service.protocol.scheme();
                    let uri = format!("{scheme}://{upstream_host}{path_and_query}");
                    Uri::try_from(uri.as_str()).map_err(|_| ProxyError::BadUpstreamUri(uri))?
                }
            };
            if let Some(v) = &host_value {
                req.headers_mut().insert(header::HOST, v.clone());
            }
            *req.version_mut() = if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };

            let in_flight = target.map(|(b, i)| b.start(i));
            let sent_at = Instant::now();
            match self.send_once(&ep, req, service.read_timeout).await {
                Ok((resp, returner)) => {
                    if let Some((b, i)) = target {
                        b.report_passive(i, Outcome::Status(resp.status().as_u16()));
                    }
                    let upstream_latency = sent_at.elapsed();
                    let proxy_latency = sent_at - self.start;
                    return Ok(Sent {
                        resp,
                        returner,
                        in_flight,
                        upstream_latency,
                        proxy_latency,
                    });
                }
                Err((e, back)) => {
                    if let Some((b, i)) = target {
                        match &e {
                            ProxyError::ConnectTimeout { .. }
                            | ProxyError::ReadTimeout
                            | ProxyError::WriteTimeout => b.report_passive(i, Outcome::Timeout),
                            _ => b.report_passive(i, Outcome::TcpFailure),
                        }
                    }
                    tracing::debug!(error = %e, attempt, "upstream attempt failed");
                    match back {
                        Some(r) if e.retryable() && attempt < tries => req = r,
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// One attempt: a pooled connection (and, when it turns out closed before the
    /// request was written, one fresh connection), then the response headers within
    /// `read_timeout`. The request comes back when it was never written.
    async fn send_once(
        &self,
        ep: &Endpoint<'_>,
        req: Request<ProxyBody>,
        read_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<Returner>), (ProxyError, Option<Request<ProxyBody>>)>
    {
        let pool = &self.inner.pool;
        let conn = match pool.checkout(ep).await {
            Ok(c) => c,
            Err(e) => return Err((e, Some(req))),
        };
        let reused = conn.reused;
        let first = timeout(read_timeout, pool.send(conn, req, ep.write_timeout)).await;
        let failure = match first {
            Err(_) => return Err((ProxyError::ReadTimeout, None)),
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(f)) => f,
        };
        let req = match (failure.request, reused) {
            (Some(req), true) => req,
            (back, _) => return Err((upstream_error(failure.error), back)),
        };
        let conn = match pool.connect_new(ep).await {
            Ok(c) => c,
            Err(e) => return Err((e, Some(req))),
        };
        match timeout(read_timeout, pool.send(conn, req, ep.write_timeout)).await {
            Err(_) => Err((ProxyError::ReadTimeout, None)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(f)) => Err((upstream_error(f.error), f.request)),
        }
    }

    /// The value consistent hashing keys on: `hash_on`, else `hash_fallback`. A
    /// missing cookie is made up and set on the response (the second value), as Kong
    /// does.
    fn hash_value(
        &self,
        b: &Balancer,
        parts: &hyper::http::request::Parts,
        m: &Match<'_>,
        query: Option<&str>,
        consumer: Option<uuid::Uuid>,
        client_ip: IpAddr,
    ) -> (Option<String>, Option<HeaderValue>) {
        let mut set_cookie = None;
        let value = |on: &HashOn, set_cookie: &mut Option<HeaderValue>| -> Option<String> {
            match on {
                HashOn::None => None,
                HashOn::Consumer => consumer.map(|c| c.to_string()),
                HashOn::Ip => Some(client_ip.to_string()),
                HashOn::Header(name) => {
                    let vals: Vec<&str> = parts
                        .headers
                        .get_all(name.as_str())
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    (!vals.is_empty()).then(|| vals.join(","))
                }
                HashOn::Cookie { name, path } => {
                    let found = parts
                        .headers
                        .get_all(header::COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(';'))
                        .filter_map(|kv| kv.trim().split_once('='))
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.to_string());
                    found.or_else(|| {
                        let made = self.inner.ids.next();
                        let made = made.as_str();
                        *set_cookie =
                            HeaderValue::from_str(&format!("{name}={made}; Path={path}")).ok();
                        Some(made.to_string())
                    })
                }
                HashOn::Path => Some(m.path.clone()),
                HashOn::QueryArg(name) => query?
                    .split('&')
                    .filter_map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k == name).then(|| v.to_string())
                    })
                    .next(),
                HashOn::UriCapture(name) => {
                    let caps = m.captures.as_ref()?;
                    match name.parse::<usize>() {
                        Ok(n) => caps.numbered.get(n).cloned().flatten(),
                        Err(_) => caps.name(name).map(str::to_string),
                    }
                }
            }
        };
        let hash = value(&b.hash_on, &mut set_cookie)
            .filter(|v| !v.is_empty())
            .or_else(|| value(&b.hash_fallback, &mut set_cookie));
        (hash, set_cookie)
    }

    /// Who sent the request: the peer, or for a peer in `trusted_ips` the client it
    /// names in `real_ip_header`.
    fn client(&self, h: &HeaderMap) -> Client {
        let conn = self.conn;
        let peer = conn.peer.ip();
        let real = self.inner.options.real_ip.as_deref();
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; trusted_ips names
        // them as IPv4.
        let Some(real) = real.filter(|r| r.trusted.contains(peer.to_canonical())) else {
            return Client {
                ip: peer,
                value: conn.peer_ip.clone(),
                trusted: false,
                https: conn.tls,
            };
        };
        // Kong takes a trusted peer's X-Forwarded-Proto as the scheme, either way.
        let https = match h.get(&X_FORWARDED_PROTO) {
            Some(p) => p.as_bytes().eq_ignore_ascii_case(b"https"),
            None => conn.tls,
        };
        match real.client_ip(h) {
            Some(ip) => Client {
                ip,
                value: HeaderValue::from_str(&ip.to_string())
                    .expect("an IP address is a valid header value"),
                trusted: true,
                https,
            },
            None => Client {
                ip: peer,
                value: conn.peer_ip.clone(),
                trusted: true,
                https,
            },
        }
    }

    /// `X-Real-IP` and `X-Forwarded-*` as Kong sets them. From a client that is not a
    /// trusted proxy, the client's own values are replaced, except `X-Forwarded-For`,
    /// which gets the client address appended (nginx's `$proxy_add_x_forwarded_for`); a
    /// trusted one's `X-Forwarded-Proto`, `-Host`, `-Port`, `-Path` and `-Prefix` pass.
    fn forwarded_headers(
        &self,
        h: &mut HeaderMap,
        host: Option<&str>,
        target: &str,
        m: &Match<'_>,
        client: &Client,
    ) {
        let conn = self.conn;
        // Up to seven names added: one growth of the map instead of several.
        h.reserve(7);
        let mut prior = h.get_all(&X_FORWARDED_FOR).iter().peekable();
        let xff = if prior.peek().is_none() {
            client.value.clone()
        } else {
            let mut joined = Vec::with_capacity(64);
            for v in prior {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client.value.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client.value.clone())
        };
        h.insert(X_REAL_IP, client.value.clone());
        h.insert(X_FORWARDED_FOR, xff);
        let ours = |h: &HeaderMap, name: &HeaderName| !(client.trusted && h.contains_key(name));
        let set = |h: &mut HeaderMap, name: HeaderName, value: &str| {
            if ours(h, &name) {
                if let Ok(v) = HeaderValue::from_str(value) {
                    h.insert(name, v);
                }
            }
        };
        if ours(h, &X_FORWARDED_PROTO) {
            let proto = if conn.tls { "https" } else { "http" };
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        match host {
            Some(hst) => set(h, X_FORWARDED_HOST, strip_port(hst)),
            None if ours(h, &X_FORWARDED_HOST) => {
                h.remove(&X_FORWARDED_HOST);
            }
            None => {}
        }
        if ours(h, &X_FORWARDED_PORT) {
            h.insert(X_FORWARDED_PORT, conn.local_port.clone());
        }
        set(h, X_FORWARDED_PATH, target.split('?').next().unwrap_or("/"));
        match m.prefix.as_deref().filter(|p| !p.is_empty() && *p != "/") {
            Some(p) => set(h, X_FORWARDED_PREFIX, p),
            None if ours(h, &X_FORWARDED_PREFIX) => {
                h.remove(&X_FORWARDED_PREFIX);
            }
            None => {}
        }
    }

    fn response_headers(&self, h: &mut HeaderMap, upstream: Duration, proxy: Duration) {
        let o = &self.inner.options;
        // Via, two latencies and the request id (added by `handle`).
        h.reserve(4);
        if o.server_tokens {
            let value = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
                Some(prior) => HeaderValue::from_str(&format!("{prior}, {VIA}")).ok(),
                None => Some(HeaderValue::from_static(VIA)),
            };
            if let Some(v) = value {
                h.insert(header::VIA, v);
            }
        }
        if o.latency_tokens {
            let names = o.header_naming;
            h.insert(names.upstream_latency(), millis(upstream));
            h.insert(names.proxy_latency(), millis(proxy));
        }
    }

    /// A plugin's own response to a gRPC request, as Kong's `kong.response` sends one:
    /// the status kept, `grpc-status` mapped from it, no body; `grpc-message` is the
    /// message of a `{message = …}` exit or a string body, else the status's name.
    fn grpc_plugin_exit(&self, e: Exit, ran: &Ran, cx: &mut Ctx<'_>) -> Response<ProxyBody> {
        let message = match &e.body {
            ExitBody::Json(v) => v["message"].as_str().map(str::to_string),
            ExitBody::Raw {
                content_type: None,
                body,
            } if !body.is_empty() => Some(String::from_utf8_lossy(body).into_owned()),
            _ => None,
        };
        let (mut parts, body) = match e.body {
            // A body the plugin typed as gRPC goes out as it is.
            ExitBody::Raw {
                content_type: Some(ct),
                body,
            } if ct.as_bytes().starts_with(b"application/grpc") => {
                let (mut parts, _) = self.exit(e.status, None).into_parts();
                parts.headers.insert(header::CONTENT_TYPE, ct);
                let code = grpc_status(e.status);
                parts.headers.insert(GRPC_STATUS, HeaderValue::from(code));
                (parts, Some(body))
            }
            _ => (
                self.grpc_error(e.status, message.as_deref()).into_parts().0,
                None,
            ),
        };
        for (name, value) in e.headers.iter() {
            parts.headers.append(name.clone(), value.clone());
        }
        PluginSet::response_headers(ran, cx, &mut parts);
        PluginSet::log(ran, cx, &parts);
        Response::from_parts(parts, body.map_or_else(body::empty, body::full))
    }

    /// The proxy's own error for a gRPC request (Kong's `kong.response.error` on one).
    fn grpc_error(&self, status: StatusCode, message: Option<&str>) -> Response<ProxyBody> {
        let mut r = self.exit(status, None);
        let code = grpc_status(status);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        h.insert(GRPC_STATUS, HeaderValue::from(code));
        let message = message
            .and_then(|m| HeaderValue::from_str(m).ok())
            .unwrap_or_else(|| HeaderValue::from_static(grpc_status_name(code)));
        h.insert(GRPC_MESSAGE, message);
        r
    }

    /// A response the proxy produces itself (Kong's `kong.response.exit`); for a gRPC
    /// request, Kong's gRPC form of it.
    fn exit(&self, status: StatusCode, message: Option<&str>) -> Response<ProxyBody> {
        if self.grpc && message.is_some() {
            return self.grpc_error(status, None);
        }
        let mut resp = match message {
            Some(msg) => {
                let json = serde_json::json!({"message": msg, "request_id": self.request_id});
                let mut r = Response::new(body::full(format!("{json}\n")));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                r
            }
            None => Response::new(body::empty()),
        };
        *resp.status_mut() = status;
        let o = &self.inner.options;
        if o.server_tokens {
            resp.headers_mut().insert(
                header::SERVER,
                HeaderValue::from_static(crate::SERVER_TOKEN),
            );
        }
        if o.latency_tokens {
            resp.headers_mut().insert(
                o.header_naming.response_latency(),
                millis(self.start.elapsed()),
            );
        }
        resp
    }

    fn https_required(
        &self,
        status: u16,
        host: Option<&str>,
        target: &str,
        version: Version,
    ) -> Response<ProxyBody> {
        if status == 426 {
            let mut r = self.exit(
                StatusCode::UPGRADE_REQUIRED,
                Some("Please use HTTPS protocol"),
            );
            if version == Version::HTTP_11 {
                let h = r.headers_mut();
                h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                h.insert(
                    header::UPGRADE,
                    HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
                );
            }
            return r;
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::UPGRADE_REQUIRED);
        let mut r = self.exit(code, None);
        let location = format!("https://{}{}", strip_port(host.unwrap_or("")), target);
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    }
}

/// A failed send: a stalled write is Kong's 504, anything else its 502.
fn upstream_error(e: hyper::Error) -> ProxyError {
    if crate::client::is_write_timeout(&e) {
        ProxyError::WriteTimeout
    } else {
        ProxyError::Upstream(e)
    }
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Kong's `HTTP_TO_GRPC_STATUS`, with its fallbacks by class.
fn grpc_status(status: StatusCode) -> u16 {
    let exact = match status.as_u16() {
        200 => Some(0),
        400 => Some(3),
        401 => Some(16),
        403 => Some(7),
        404 => Some(5),
        409 => Some(6),
        429 => Some(8),
        499 => Some(1),
        500 => Some(13),
        501 => Some(12),
        503 => Some(14),
        504 => Some(4),
        _ => None,
    };
    exact.unwrap_or(if status.is_server_error() {
        13
    } else if status.is_client_error() {
        3
    } else if status.is_success() {
        0
    } else {
        2
    })
}

/// Kong's `GRPC_MESSAGES`.
fn grpc_status_name(code: u16) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Kong's answer to a plain-text gRPC request on a grpcs-only route.
fn grpcs_required() -> Response<ProxyBody> {
    let mut r = Response::new(body::empty());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from_static("1"));
    h.insert(
        "grpc-message",
        HeaderValue::from_static("gRPC request matched gRPCs route"),
    );
    r
}

fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A latency header's value. Below a second it is one of a table made once, whose
/// values are static: no allocation and no formatting on a request.
fn millis(d: Duration) -> HeaderValue {
    static SMALL: std::sync::LazyLock<Vec<HeaderValue>> = std::sync::LazyLock::new(|| {
        // One string for the process's life: "0123...999", each value a slice of it.
        let mut all = String::new();
        let mut ends = Vec::with_capacity(SMALL_MILLIS);
        for n in 0..SMALL_MILLIS {
            all.push_str(&n.to_string());
            ends.push(all.len());
        }
        let all: &'static str = Box::leak(all.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let v = HeaderValue::from_static(&all[start..end]);
                start = end;
                v
            })
            .collect()
    });
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match usize::try_from(ms).ok().and_then(|i| SMALL.get(i)) {
        Some(v) => v.clone(),
        None => HeaderValue::from(ms),
    }
}

const SMALL_MILLIS: usize = 1000;

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Removes hop-by-hop headers and those the `Connection` header names. `TE: trailers`
/// stays (gRPC needs it); `Upgrade` stays on an upgrade.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // Most messages carry at most `Connection`: one pass over the names finds which
    // hop-by-hop names are there, and only those are hashed into the map to remove.
    let mut present = 0u8;
    for k in h.keys() {
        if let Some(i) = hop_by_hop_index(k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    let has = |name: &HeaderName| hop_by_hop_index(name).is_some_and(|i| present & (1 << i) != 0);
    let keep_te = has(&header::TE)
        && h.get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    if has(&header::CONNECTION) {
        // Names the `Connection` header lists beyond the usual ones; the Vec allocates
        // only when there is one (`Connection: keep-alive` or `close` is the common case).
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| hop_by_hop_index(n).is_none())
            .collect();
        for name in named {
            h.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) == 0
            || (upgrade && *name == header::UPGRADE)
            || (keep_te && *name == header::TE)
        {
            continue;
        }
        h.remove(name);
    }
}

/// Where `name` is in [`HOP_BY_HOP`]. A match on the name's text (a length check, then
/// at most one comparison) rather than comparing `HeaderName`s one by one: it runs for
/// every header of every request and response.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        _ => return None,
    })
}

/// `host:port`, the port left out when it is the scheme's default (Kong's
/// `set_host_header`).
pub(crate) fn host_port(host: &str, port: u16, tls: bool) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if (port == 80 && !tls) || (port == 443 && tls) {
        host
    } else {
        format!("{host}:{port}")
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

/// Kong's `escape` of the upstream URI: the router normalised the path (decoding
/// unreserved escapes), so bytes that may not appear in a path are escaped again.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            const UPPER: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(UPPER[usize::from(b >> 4)]));
            out.push(char::from(UPPER[usize::from(b & 0xf)]));
        }
    }
    out
}

// Consts, so that each name is built at compile time: `HeaderName::from_static` in a
// function body checks the name, byte by byte, on every request.
const X_TIDEGATE_UPSTREAM_LATENCY: HeaderName =
    HeaderName::from_static("x-tidegate-upstream-latency");
const X_KONG_UPSTREAM_LATENCY: HeaderName = HeaderName::from_static("x-kong-upstream-latency");
const X_TIDEGATE_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-tidegate-proxy-latency");
const X_KONG_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-kong-proxy-latency");
const X_TIDEGATE_RESPONSE_LATENCY: HeaderName =
    HeaderName::from_static("x-tidegate-response-latency");
const X_KONG_RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-kong-response-latency");
const X_TIDEGATE_REQUEST_ID: HeaderName = HeaderName::from_static("x-tidegate-request-id");
const X_KONG_REQUEST_ID: HeaderName = HeaderName::from_static("x-kong-request-id");

impl HeaderNaming {
    fn upstream_latency(self) -> HeaderName {
        match self {
            HeaderNaming::Tidegate => X_TIDEGATE_UPSTREAM_LATENCY,
            HeaderNaming::Kong => X_KONG_UPSTREAM_LATENCY,
        }
    }
    fn proxy_latency(self) -> HeaderName {
        match self {
            HeaderNaming::Tidegate => X_TIDEGATE_PROXY_LATENCY,
            HeaderNaming::Kong => X_KONG_PROXY_LATENCY,
        }
    }
    fn response_latency(self) -> HeaderName {
        match self {
            HeaderNaming::Tidegate => X_TIDEGATE_RESPONSE_LATENCY,
            HeaderNaming::Kong => X_KONG_RESPONSE_LATENCY,
        }
    }
    fn request_id(self) -> HeaderName {
        match self {
            HeaderNaming::Tidegate => X_TIDEGATE_REQUEST_ID,
            HeaderNaming::Kong => X_KONG_REQUEST_ID,
        }
    }
}

#[cfg(test)]
mod tests;
