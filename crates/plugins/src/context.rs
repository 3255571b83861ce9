//! What a plugin knows about the request it runs for.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Method};
use uuid::Uuid;

use crate::body::RequestBody;
use crate::consumers::{ConsumerInfo, Consumers};

/// The request's protocol, as plugins' `protocols` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            Protocol::Http => 1,
            Protocol::Https => 2,
            Protocol::Grpc => 4,
            Protocol::Grpcs => 8,
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Protocol> {
        Some(match name {
            "http" => Protocol::Http,
            "https" => Protocol::Https,
            "grpc" => Protocol::Grpc,
            "grpcs" => Protocol::Grpcs,
            _ => return None,
        })
    }
}

/// The credential an auth plugin authenticated the request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: Uuid,
    /// What identifies it to the upstream (`X-Credential-Identifier`): the key-auth
    /// credential's id, the basic-auth username.
    pub identifier: String,
}

/// The plugin instance whose access phase is running: Kong's `kong.plugin.get_id()` and
/// the `route_id` / `service_id` Kong adds to a plugin's conf (rate-limiting keys its
/// counters by them, so that every DP names a counter the same way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginScope {
    pub id: Uuid,
    pub route: Option<Uuid>,
    pub service: Option<Uuid>,
}

/// Where the response the response phases see came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSource {
    Upstream,
    /// A plugin's exit.
    Exit,
    /// The proxy's own error (no route, upstream failure).
    Proxy,
}

/// Per-request context shared by the plugins of one request (Kong's `ngx.ctx` and
/// `kong.client`).
pub struct Ctx<'a> {
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub protocol: Protocol,
    pub route_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    /// Set by an auth plugin (or to the anonymous consumer).
    pub consumer: Option<Arc<ConsumerInfo>>,
    pub credential: Option<Credential>,
    /// Groups an auth plugin established without a consumer (Kong's
    /// `authenticated_groups`); acl prefers them when told to.
    pub authenticated_groups: Option<Arc<[String]>>,
    /// The consumers and credentials of this config version.
    pub consumers: &'a Consumers,
    /// Set by the runner before each instance's access phase.
    pub plugin: PluginScope,
    /// Seconds since the Unix epoch when the request arrived (credential TTLs, rate-limit
    /// windows).
    pub now: f64,
    /// Headers for whatever response goes to the client, upstream's or an exit (Kong's
    /// `kong.response.set_header` called in access).
    pub response_headers: HeaderMap,
    pub response_source: ResponseSource,
    /// Per-request values a plugin keeps between its phases, keyed by a type of its own.
    pub extensions: http::Extensions,
}

impl<'a> Ctx<'a> {
    pub fn new(
        request_id: &'a str,
        client_ip: IpAddr,
        protocol: Protocol,
        consumers: &'a Consumers,
        now: f64,
    ) -> Self {
        Ctx {
            request_id,
            client_ip,
            protocol,
            route_id: None,
            service_id: None,
            consumer: None,
            credential: None,
            authenticated_groups: None,
            consumers,
            plugin: PluginScope::default(),
            now,
            response_headers: HeaderMap::new(),
            response_source: ResponseSource::Upstream,
            extensions: http::Extensions::new(),
        }
    }

    /// Authenticates the request as `consumer` with `credential` (Kong's
    /// `kong.client.authenticate`).
    pub fn authenticate(&mut self, consumer: Arc<ConsumerInfo>, credential: Option<Credential>) {
        self.consumer = Some(consumer);
        self.credential = credential;
    }
}

/// The request as it will go upstream. Changes plugins make here are what the upstream
/// receives; reads see earlier plugins' changes (as in Kong, where
/// `kong.service.request.set_header` changes what `kong.request.get_header` returns).
pub struct Req {
    pub method: Method,
    /// The client's path, without the query string (Kong's `kong.request.get_path`).
    pub path: String,
    /// The query string that goes upstream.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// Replaces the path the router computed for the upstream (request-transformer's
    /// `replace.uri`).
    pub upstream_path: Option<String>,
}
