//! How a proxy runs: limits, header names, trusted roots. Every default is a named
//! constant.

use std::time::Duration;

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
        }
    }
}
