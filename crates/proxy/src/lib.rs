//! tidegate's data-plane proxy: serves client traffic on `proxy_listen` with Kong's
//! router, upstream balancers, timeouts, retries and error bodies, and swaps configs
//! without dropping requests.
//!
//! ```text
//!  watch<T> ──to_state──▶ Arc<ConfigState> ──spawn_blocking: ProxyConfig::build_with──▶ Live (swap)
//!                                                                                        │ load() per request
//!  TcpListener ─▶ [TLS: SNI → CertMap, ALPN h2] ─▶ hyper (h1 / h2) ─▶ proxy::handle ─────┘
//!                                                                       │ router → service → balancer
//!                                                                       ▼
//!                                                   client::Pool (keep-alive, h1 / h2, TLS) ─▶ upstream
//! ```
//!
//! A request keeps the `Arc<ProxyConfig>` it started with, so a swap never changes the
//! rules under it; balancers whose upstream and targets did not change are carried into
//! the new config with their health and counters.

mod balancer;
mod body;
mod client;
mod config;
mod error;
mod listen;
mod metrics;
mod options;
mod proxy;
mod server;
mod tls;

use std::future::Future;
use std::io;
use std::sync::Arc;

use tidegate_state::ConfigState;
use tokio::sync::watch;

pub use balancer::{HashOn, Outcome as HealthOutcome};
pub use config::{BuildContext, ProxyConfig, ServiceInfo, UpstreamProtocol};
pub use error::{kong_message, BuildError, ErrorSource, ProxyError};
pub use listen::{parse_proxy_listen, Listen};
pub use metrics::ProxyStats;
pub use options::*;
pub use server::Bound;

/// `Via` and `Server` token: Kong sends `kong/<version>`.
pub const SERVER_TOKEN: &str = concat!("tidegate/", env!("CARGO_PKG_VERSION"));
/// `User-Agent` of active health-check probes.
pub const USER_AGENT: &str = concat!("tidegate/", env!("CARGO_PKG_VERSION"), " (healthcheck)");

/// A running proxy: the config it serves (kept current from a watch channel) and what
/// its connections share.
pub struct Proxy {
    inner: Arc<proxy::Inner>,
    resolver: Arc<tls::SniResolver>,
    served: watch::Receiver<u64>,
}

// === impl Proxy ===

impl Proxy {
    /// Builds the config `configs` holds now and follows it: each new value is compiled
    /// on a blocking thread and swapped in when ready (a burst of values builds only
    /// the latest). A config that fails to build is logged and skipped; the previous
    /// one keeps serving.
    ///
    /// `to_state` picks the config out of the channel's value, so the proxy needs no
    /// knowledge of who feeds it (e.g. `|c: &Arc<Current>| c.state.clone()` for the DP).
    pub async fn start<T, F>(
        mut configs: watch::Receiver<T>,
        to_state: F,
        options: ProxyOptions,
    ) -> Result<Proxy, BuildError>
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> Arc<ConfigState> + Send + 'static,
    {
        let roots = match &options.trusted_ca_pem {
            Some(pem) => Some(Arc::new(tls::roots_from_pem(pem).map_err(BuildError::Tls)?)),
            None => None,
        };
        let first = to_state(&configs.borrow_and_update());
        let runtime = Arc::new(tidegate_plugins::Runtime::new());
        let registry = Arc::new(options.plugins.clone());
        let built = {
            let roots = roots.clone();
            let (runtime, registry) = (runtime.clone(), registry.clone());
            tokio::task::spawn_blocking(move || {
                ProxyConfig::build_with(
                    &first,
                    &BuildContext {
                        roots: roots.as_ref(),
                        previous: None,
                        plugins: Some((&registry, &runtime)),
                    },
                )
            })
            .await
            .map_err(|e| BuildError::Tls(format!("config build panicked: {e}")))??
        };
        let built = Arc::new(built);
        built.start_health_checks();
        let (served_tx, served) = watch::channel(built.version);
        let live = Arc::new(config::Live::new(built));
        let default = tls::default_cert().map_err(BuildError::Tls)?;
        let resolver = Arc::new(tls::SniResolver {
            live: live.clone(),
            default,
        });
        let inner = Arc::new(proxy::Inner {
            live: live.clone(),
            metrics: Arc::default(),
            pool: client::Pool::new(
                options.upstream_keepalive_pool_size,
                options.upstream_keepalive_idle_timeout,
            ),
            ids: proxy::RequestIds::new(options.request_id_seed),
            options,
        });
        tokio::spawn(async move {
            while configs.changed().await.is_ok() {
                let state = to_state(&configs.borrow_and_update());
                let current = live.load();
                if state.version() == current.version && state.hash().to_string() == current.hash {
                    continue;
                }
                let roots = roots.clone();
                let prev = current.clone();
                let (runtime, registry) = (runtime.clone(), registry.clone());
                let built = tokio::task::spawn_blocking(move || {
                    ProxyConfig::build_with(
                        &state,
                        &BuildContext {
                            roots: roots.as_ref(),
                            previous: Some(&prev),
                            plugins: Some((&registry, &runtime)),
                        },
                    )
                })
                .await;
                match built {
                    Ok(Ok(next)) => {
                        let next = Arc::new(next);
                        next.start_health_checks();
                        let version = next.version;
                        let old = live.store(next);
                        drop(current);
                        // The old config may be big: drop it off the async threads.
                        tokio::task::spawn_blocking(move || drop(old));
                        tracing::info!(version, "proxy config swapped in");
                        let _ = served_tx.send(version);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "new config not served: it does not build")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "new config not served: building it panicked")
                    }
                }
            }
        });
        Ok(Proxy {
            inner,
            resolver,
            served,
        })
    }

    /// The version of the config being served; changes after each swap.
    pub fn served_version(&self) -> watch::Receiver<u64> {
        self.served.clone()
    }

    /// What `/metrics` shows of this proxy: requests, latencies, target health.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            metrics: self.inner.metrics.clone(),
            live: self.inner.live.clone(),
        }
    }

    /// The config being served.
    pub fn config(&self) -> Arc<ProxyConfig> {
        self.inner.live.load()
    }

    /// Serves `listeners` until `shutdown` resolves; then stops accepting and waits up
    /// to `shutdown_grace` for requests in flight.
    pub async fn serve(
        &self,
        listeners: Vec<Bound>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        server::run(
            self.inner.clone(),
            self.resolver.clone(),
            listeners,
            shutdown,
        )
        .await
    }
}

/// Binds every `proxy_listen` entry.
pub async fn bind(listen: &[Listen]) -> io::Result<Vec<Bound>> {
    let mut out = Vec::with_capacity(listen.len());
    for l in listen {
        let listener = tokio::net::TcpListener::bind(l.addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.addr)))?;
        out.push(Bound {
            listener,
            ssl: l.ssl,
            http2: l.http2,
        });
    }
    Ok(out)
}
