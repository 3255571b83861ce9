//! [`ProxyConfig`]: one config version compiled for serving (router, services with their
//! upstream TLS, balancers, the SNI certificate map), and [`Live`], the holder the
//! request path reads it from.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use tidegate_model::entities::{CaCertificate, Certificate, Service, Sni, Target, Upstream};
use tidegate_model::{Entity, EntityKind};
use tidegate_plugins::{PluginSet, Registry, Runtime};
use tidegate_router::Router;
use tidegate_state::ConfigState;
use uuid::Uuid;

use crate::balancer::{hash64, Balancer};
use crate::error::BuildError;
use crate::tls::{self, CertMap, ClientTls};

/// What the proxy serves at one config version. Built off the request path, then swapped
/// in whole; requests in flight keep the `Arc` they started with.
pub struct ProxyConfig {
    pub version: u64,
    pub hash: String,
    pub router: Router,
    /// Looked up once per request: foldhash rather than SipHash (ids from the config).
    pub services: HashMap<Uuid, Arc<ServiceInfo>, foldhash::fast::RandomState>,
    /// Balancers by upstream name.
    pub balancers: HashMap<String, Arc<Balancer>>,
    pub certs: CertMap,
    /// The plugin instances of this version, with the consumer index they use.
    pub plugins: PluginSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl UpstreamProtocol {
    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamProtocol::Https | UpstreamProtocol::Grpcs)
    }
    pub fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs)
    }
    pub fn scheme(self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }
}

/// A service as the request path needs it.
pub struct ServiceInfo {
    pub id: Uuid,
    pub name: Option<String>,
    pub protocol: UpstreamProtocol,
    pub host: Arc<str>,
    pub port: u16,
    /// `Host` sent upstream when neither the route preserves it nor a balancer
    /// chooses the target: `host[:port]`, made once per config version.
    pub host_header: Option<hyper::header::HeaderValue>,
    pub path: Option<String>,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    pub read_timeout: Duration,
    /// The TLS client config and a key naming it in the connection pool.
    pub tls: Option<(Arc<ClientConfig>, u64)>,
    /// Set when `host` names an upstream.
    pub balancer: Option<Arc<Balancer>>,
}

/// Inputs to [`ProxyConfig::build_with`] beyond the config itself.
#[derive(Default)]
pub struct BuildContext<'a> {
    /// Trusted roots for `tls_verify` services without `ca_certificates`.
    pub roots: Option<&'a Arc<RootCertStore>>,
    /// The config being replaced: balancers whose upstream and targets are unchanged
    /// are carried over with their health and in-flight counts.
    pub previous: Option<&'a ProxyConfig>,
    /// The plugins to build instances of, and what they share across versions. None:
    /// no plugin runs.
    pub plugins: Option<(&'a Registry, &'a Runtime)>,
}

// === impl ProxyConfig ===

impl ProxyConfig {
    pub fn build(state: &ConfigState) -> Result<Self, BuildError> {
        Self::build_with(state, &BuildContext::default())
    }

    /// An empty config: every request is answered 404.
    pub fn empty() -> Self {
        Self::build(&ConfigState::new()).expect("the empty config compiles")
    }

    pub fn build_with(state: &ConfigState, cx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let mut upstreams: Vec<&Upstream> = Vec::new();
        let mut targets: HashMap<Uuid, Vec<Target>> = HashMap::new();
        let mut certs: Vec<&Certificate> = Vec::new();
        let mut snis: Vec<&Sni> = Vec::new();
        let mut cas: HashMap<Uuid, &CaCertificate> = HashMap::new();
        for e in state.iter_kind(EntityKind::Upstream) {
            if let Entity::Upstream(u) = e {
                upstreams.push(u);
            }
        }
        for e in state.iter_kind(EntityKind::Target) {
            if let Entity::Target(t) = e {
                if let Some(u) = t.upstream {
                    targets.entry(u.id).or_default().push((**t).clone());
                }
            }
        }
        for e in state.iter_kind(EntityKind::Certificate) {
            if let Entity::Certificate(c) = e {
                certs.push(c);
            }
        }
        for e in state.iter_kind(EntityKind::Sni) {
            if let Entity::Sni(s) = e {
                snis.push(s);
            }
        }
        for e in state.iter_kind(EntityKind::CaCertificate) {
            if let Entity::CaCertificate(c) = e {
                cas.insert(c.id, c);
            }
        }

        let mut balancers = HashMap::new();
        for u in upstreams {
            let ts = targets.remove(&u.id).unwrap_or_default();
            let reused = cx
                .previous
                .and_then(|p| p.balancers.get(&u.name))
                .filter(|b| b.same_source(u, &ts))
                .cloned();
            let b = reused.unwrap_or_else(|| Arc::new(Balancer::new(u, ts)));
            balancers.insert(u.name.clone(), b);
        }

        let mut services = HashMap::default();
        let mut enabled = std::collections::HashSet::new();
        let mut tls_cache: HashMap<u64, Arc<ClientConfig>> = HashMap::new();
        for e in state.iter_kind(EntityKind::Service) {
            let Entity::Service(s) = e else { continue };
            if !s.enabled {
                continue;
            }
            enabled.insert(s.id);
            let Some(protocol) = protocol(&s.protocol) else {
                continue;
            };
            let tls = if protocol.is_tls() {
                let spec = client_tls(s, protocol, state, &cas);
                let key = tls_key(&spec);
                let config = match tls_cache.get(&key) {
                    Some(c) => c.clone(),
                    None => {
                        let c = tls::client_config(&spec, cx.roots)
                            .map_err(|why| BuildError::Service { id: s.id, why })?;
                        tls_cache.insert(key, c.clone());
                        c
                    }
                };
                Some((config, key))
            } else {
                None
            };
            let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
            services.insert(
                s.id,
                Arc::new(ServiceInfo {
                    id: s.id,
                    name: s.name.clone(),
                    protocol,
                    host: s.host.as_str().into(),
                    port: u16::try_from(s.port).unwrap_or(80),
                    host_header: hyper::header::HeaderValue::from_str(&crate::proxy::host_port(
                        &s.host,
                        u16::try_from(s.port).unwrap_or(80),
                        protocol.is_tls(),
                    ))
                    .ok(),
                    path: s.path.clone(),
                    retries: u32::try_from(s.retries).unwrap_or(0),
                    connect_timeout: ms(s.connect_timeout),
                    write_timeout: ms(s.write_timeout),
                    read_timeout: ms(s.read_timeout),
                    tls,
                    balancer: balancers.get(&s.host).cloned(),
                }),
            );
        }

        // Kong's build_router leaves out routes whose service is disabled.
        let routes = state.iter_kind(EntityKind::Route).filter_map(|e| match e {
            Entity::Route(r) => match r.service {
                Some(fk) if !enabled.contains(&fk.id) => None,
                _ => Some(&**r),
            },
            _ => None,
        });
        let router = Router::build(routes)?;
        let certs =
            CertMap::build(certs, snis).map_err(|(id, why)| BuildError::Certificate { id, why })?;
        let plugins = match cx.plugins {
            Some((registry, rt)) => {
                let (set, warnings) = PluginSet::build(state, registry, rt);
                for w in warnings {
                    tracing::warn!(version = state.version(), "{w}");
                }
                set
            }
            None => PluginSet::default(),
        };
        Ok(ProxyConfig {
            version: state.version(),
            hash: state.hash().to_string(),
            router,
            services,
            balancers,
            certs,
            plugins,
        })
    }

    /// Starts the active health checks of balancers that have none running yet. Needs a
    /// tokio runtime; called when the config is swapped in.
    pub fn start_health_checks(&self) {
        for b in self.balancers.values() {
            crate::balancer::spawn_active_checks(b);
        }
    }
}

fn protocol(p: &str) -> Option<UpstreamProtocol> {
    Some(match p {
        "http" => UpstreamProtocol::Http,
        "https" => UpstreamProtocol::Https,
        "grpc" => UpstreamProtocol::Grpc,
        "grpcs" => UpstreamProtocol::Grpcs,
        // tcp, tls, tls_passthrough, udp: the stream subsystem, not served here.
        _ => return None,
    })
}

fn client_tls(
    s: &Service,
    protocol: UpstreamProtocol,
    state: &ConfigState,
    cas: &HashMap<Uuid, &CaCertificate>,
) -> ClientTls {
    let ca_pems = s
        .ca_certificates
        .iter()
        .flatten()
        .filter_map(|id| cas.get(id).map(|c| c.cert.clone()))
        .collect();
    let client_cert =
        s.client_certificate
            .and_then(|fk| match state.get(EntityKind::Certificate, fk.id) {
                Some(Entity::Certificate(c)) => Some((c.cert.clone(), c.key.clone())),
                _ => None,
            });
    ClientTls {
        verify: s.tls_verify.unwrap_or(false),
        cas: ca_pems,
        client_cert,
        h2: protocol.is_h2(),
    }
}

fn tls_key(t: &ClientTls) -> u64 {
    let mut buf = Vec::new();
    buf.push(u8::from(t.verify));
    buf.push(u8::from(t.h2));
    for c in &t.cas {
        buf.extend_from_slice(c.as_bytes());
        buf.push(0);
    }
    if let Some((c, k)) = &t.client_cert {
        buf.extend_from_slice(c.as_bytes());
        buf.push(1);
        buf.extend_from_slice(k.as_bytes());
    }
    hash64(&buf)
}

// === impl Live ===

/// The config being served. Readers clone the `Arc` under a read lock held for
/// nanoseconds; the writer swaps it after building the next one elsewhere.
pub struct Live {
    current: RwLock<Arc<ProxyConfig>>,
}

impl Live {
    pub fn new(config: Arc<ProxyConfig>) -> Self {
        Live {
            current: RwLock::new(config),
        }
    }

    pub fn load(&self) -> Arc<ProxyConfig> {
        self.current.read().expect("config lock poisoned").clone()
    }

    /// Swaps in `config` and hands back the previous one, so that its drop (possibly
    /// the last reference to a big router) happens outside the lock.
    pub fn store(&self, config: Arc<ProxyConfig>) -> Arc<ProxyConfig> {
        let mut guard = self.current.write().expect("config lock poisoned");
        std::mem::replace(&mut *guard, config)
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("version", &self.load().version)
            .finish()
    }
}
