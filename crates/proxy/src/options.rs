//! How a proxy runs: limits, header names, trusted roots. Every default is a named
//! constant.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName};
use tidegate_model::ipset::IpSet;

/// Kong's `client_max_body_size 0`: no limit on request bodies by default.
pub const DEFAULT_MAX_REQUEST_BODY: Option<u64> = None;
/// The most bytes of request line and headers an HTTP/1.1 client may send, and the
/// largest HTTP/2 header list (nginx allows 4 buffers of 8k per request).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most headers in one HTTP/1.1 request (hyper's default).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Concurrent client connections per listener (nginx's `worker_connections` is 16384
/// per worker in Kong's template); beyond it new connections wait in the backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// How long a TLS handshake with a client may take.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for requests in flight.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Which names the latency and request-id headers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderNaming {
    /// `X-Tidegate-Upstream-Latency`, `X-Tidegate-Proxy-Latency`,
    /// `X-Tidegate-Response-Latency`, `X-Tidegate-Request-Id` (the default).
    Tidegate,
    /// Kong's names, for clients and dashboards that key on them:
    /// `X-Kong-Upstream-Latency`, `X-Kong-Proxy-Latency`, `X-Kong-Response-Latency`,
    /// `X-Kong-Request-Id`.
    Kong,
}

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub header_naming: HeaderNaming,
    /// Kong's `headers = server_tokens`: `Via` on proxied responses, `Server` on the
    /// proxy's own.
    pub server_tokens: bool,
    /// Kong's `headers = latency_tokens`.
    pub latency_tokens: bool,
    pub max_request_body: Option<u64>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Roots for services with `tls_verify` and no `ca_certificates` (Kong's
    /// `lua_ssl_trusted_certificate`), as a PEM bundle. None: such services fail TLS.
    pub trusted_ca_pem: Option<String>,
    /// Seeds request ids (and made-up hash cookies). The binary passes OS randomness.
    pub request_id_seed: u64,
    pub upstream_keepalive_pool_size: usize,
    pub upstream_keepalive_idle_timeout: Duration,
    /// The plugins this node runs (the `plugins` setting applied to the bundled ones,
    /// plus any registered in a custom build). Instances of others are not run.
    pub plugins: tidegate_plugins::Registry,
    /// The most bytes of an upstream response body a plugin may ask to see whole
    /// (response-transformer on JSON); a larger body is answered 502.
    pub max_buffered_response: usize,
    /// Seconds since the Unix epoch: what plugins take as "now" (credential TTLs,
    /// rate-limit windows). Tests pass a clock they move.
    pub wall_clock: fn() -> f64,
    /// Kong's `trusted_ips` with `real_ip_header` and `real_ip_recursive`. None (the
    /// default): no peer is trusted, every `X-Forwarded-*` a client sends is replaced.
    pub real_ip: Option<Arc<RealIp>>,
}

/// Peers whose forwarding headers are believed (nginx's realip module as Kong sets it
/// up): for a request from one of them, the client address comes from `header`, and the
/// `X-Forwarded-Proto`, `-Host`, `-Port`, `-Path` and `-Prefix` it sent are passed on.
#[derive(Debug, Clone)]
pub struct RealIp {
    pub trusted: IpSet,
    /// `X-Real-IP` by default; `X-Forwarded-For` to take the address from a list.
    pub header: HeaderName,
    /// Off: the last address of the list. On: the last one that is not trusted.
    pub recursive: bool,
}

impl RealIp {
    /// Kong's default `real_ip_header`.
    pub const DEFAULT_HEADER: HeaderName = HeaderName::from_static("x-real-ip");

    /// The client address a trusted peer forwarded, None when the header is missing or
    /// the address it points at does not parse (the peer's own address stands).
    pub fn client_ip(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let mut addrs = headers
            .get_all(&self.header)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .rev()
            .peekable();
        let mut leftmost = None;
        while let Some(a) = addrs.next() {
            let ip = parse_addr(a)?.to_canonical();
            if !self.recursive || !self.trusted.contains(ip) || addrs.peek().is_none() {
                return Some(ip);
            }
            leftmost = Some(ip);
        }
        leftmost
    }
}

/// An address as forwarding headers write it: bare, `[v6]`, or either with a port.
fn parse_addr(a: &str) -> Option<IpAddr> {
    if let Ok(ip) = a.parse() {
        return Some(ip);
    }
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = a.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// The system clock, the default [`ProxyOptions::wall_clock`].
#[allow(clippy::disallowed_methods)] // the one place the proxy reads the wall clock
pub fn system_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// See [`ProxyOptions::max_buffered_response`].
pub const DEFAULT_MAX_BUFFERED_RESPONSE: usize = 16 * 1024 * 1024;

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            header_naming: HeaderNaming::Tidegate,
            server_tokens: true,
            latency_tokens: true,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            trusted_ca_pem: None,
            request_id_seed: 0,
            upstream_keepalive_pool_size: crate::client::DEFAULT_MAX_IDLE_PER_KEY,
            upstream_keepalive_idle_timeout: crate::client::DEFAULT_IDLE_TIMEOUT,
            plugins: tidegate_plugins::Registry::bundled(),
            max_buffered_response: DEFAULT_MAX_BUFFERED_RESPONSE,
            wall_clock: system_clock,
            real_ip: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn real_ip(header: &str, recursive: bool) -> RealIp {
        RealIp {
            trusted: IpSet::build(&["10.0.0.0/8"]).unwrap(),
            header: HeaderName::from_bytes(header.as_bytes()).unwrap(),
            recursive,
        }
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_address_nginx_realip_would_pick() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let xff = "x-forwarded-for";
        let cases: &[(&str, bool, &[&str], Option<IpAddr>)] = &[
            ("x-real-ip", false, &["1.2.3.4"], ip("1.2.3.4")),
            ("x-real-ip", false, &[], None),
            ("x-real-ip", false, &["not an address"], None),
            (xff, false, &["1.1.1.1, 10.0.0.2"], ip("10.0.0.2")),
            (xff, true, &["1.1.1.1, 10.0.0.2"], ip("1.1.1.1")),
            (xff, true, &["2.2.2.2, 1.1.1.1", "10.0.0.3"], ip("1.1.1.1")),
            (xff, true, &["10.0.0.9, 10.0.0.2"], ip("10.0.0.9")),
            (xff, false, &["[2001:db8::1]:443"], ip("2001:db8::1")),
            (xff, false, &["1.2.3.4:5678"], ip("1.2.3.4")),
        ];
        for (name, recursive, values, want) in cases {
            let got = real_ip(name, *recursive).client_ip(&headers(name, values));
            assert_eq!(got, *want, "{name} {recursive} {values:?}");
        }
    }
}
