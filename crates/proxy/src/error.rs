//! Every way a proxied request can fail, tagged with where it failed and whether another
//! try may succeed, and mapped to Kong's status codes and messages in one place.

use std::io;

use hyper::StatusCode;

/// Where a failure came from (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The service or target.
    Upstream,
    /// The client or the request it sent.
    Downstream,
    /// The proxy itself or its config.
    Internal,
}

/// A proxied request that could not be answered by the upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no Route matched with those values")]
    NoRoute,
    #[error("no Service found with those values")]
    NoService,
    #[error("failure to get a peer from the ring-balancer")]
    NoPeer,
    #[error("cannot resolve {host}: {error}")]
    Resolve { host: String, error: io::Error },
    #[error("connecting to {addr} failed: {error}")]
    Connect { addr: String, error: io::Error },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: String },
    #[error("TLS handshake with {addr} failed: {error}")]
    Tls { addr: String, error: io::Error },
    #[error("upstream handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error("the upstream timed out sending its response headers")]
    ReadTimeout,
    #[error("the upstream stopped reading the request for longer than write_timeout")]
    WriteTimeout,
    #[error("upstream request failed: {0}")]
    Upstream(hyper::Error),
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("invalid upstream uri {0:?}")]
    BadUpstreamUri(String),
    #[error("gRPC request matched gRPCs route")]
    GrpcsRequired,
    /// A plugin needed the whole upstream body and could not have it (too large, or
    /// the upstream broke off).
    #[error("the upstream response body could not be read whole for a plugin")]
    BadResponseBody,
}

// === impl ProxyError ===

impl ProxyError {
    pub fn source(&self) -> ErrorSource {
        match self {
            ProxyError::NoRoute | ProxyError::BodyTooLarge { .. } | ProxyError::GrpcsRequired => {
                ErrorSource::Downstream
            }
            ProxyError::NoService | ProxyError::BadUpstreamUri(_) => ErrorSource::Internal,
            _ => ErrorSource::Upstream,
        }
    }

    /// Whether trying again (another target, a new connection) may succeed: only
    /// failures before the request reached the upstream, so a retry never sends a
    /// request twice.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::Resolve { .. }
                | ProxyError::Connect { .. }
                | ProxyError::ConnectTimeout { .. }
                | ProxyError::Tls { .. }
                | ProxyError::Handshake(_)
        )
    }

    /// Kong's status code for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoService | ProxyError::NoPeer => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectTimeout { .. }
            | ProxyError::ReadTimeout
            | ProxyError::WriteTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadUpstreamUri(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::GrpcsRequired => StatusCode::OK,
            ProxyError::Resolve { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::Handshake(_)
            | ProxyError::Upstream(_)
            | ProxyError::BadResponseBody => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `message` of Kong's JSON body.
    pub fn message(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no Route matched with those values",
            ProxyError::NoService => "no Service found with those values",
            ProxyError::NoPeer => "failure to get a peer from the ring-balancer",
            ProxyError::GrpcsRequired => "gRPC request matched gRPCs route",
            ProxyError::Resolve { .. } => "name resolution failed",
            // nginx answers these itself; Kong's error handler gives the message.
            other => kong_message(other.status()),
        }
    }
}

/// `kong/error_handlers.lua`'s messages for statuses nginx produces.
pub fn kong_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        404 => "Not found",
        405 => "Method not allowed",
        408 => "Request timeout",
        411 => "Length required",
        412 => "Precondition failed",
        413 => "Payload too large",
        414 => "URI too long",
        417 => "Expectation failed",
        494 | 431 => "Request header or cookie too large",
        500 => "An unexpected error occurred",
        502 => "An invalid response was received from the upstream server",
        503 => "The upstream server is currently unavailable",
        504 => "The upstream server is timing out",
        _ => "An unexpected error occurred",
    }
}

/// Errors building a [`crate::ProxyConfig`] from a config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("router: {0}")]
    Router(#[from] tidegate_router::BuildError),
    #[error("certificate {id}: {why}")]
    Certificate { id: uuid::Uuid, why: String },
    #[error("service {id}: {why}")]
    Service { id: uuid::Uuid, why: String },
    #[error("TLS: {0}")]
    Tls(String),
}
