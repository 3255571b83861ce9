//! `role = data_plane`: no Admin API at all. Start from the cache (else
//! `declarative_config`, else empty), sync from any CP in `cluster_control_plane`, and
//! keep serving what it has while no CP answers (DESIGN.md §5).

use std::sync::Arc;

use anyhow::Context;
use tidegate_dp::sync::{Connect, Current, DpSync, HelloInfo, SyncSettings};
use tidegate_dp::Cache;
use tidegate_model::declarative::{self, ParseOptions};
use tidegate_model::Fixed;
use tidegate_state::{Command, ConfigState, Machine, Op};
use tokio::sync::watch;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::config_cmd::{entropy, file_errors, pretty_error, read_declarative, unix_now};
use crate::settings::Settings;
use crate::start::{cluster_tls, hostname, terminated};
use crate::status::{DpSources, Sources};

/// What the DP serves before any CP answers.
fn initial_config(settings: &Settings, cache: &mut Cache) -> anyhow::Result<Current> {
    match cache.resume() {
        Ok(Some(state)) => {
            info!(version = state.version(), hash = %state.hash(), entities = state.len(), "serving the cached config");
            return Ok(Current::from_cache(state));
        }
        Ok(None) => {}
        Err(e) => {
            error!(error = %e, path = %cache.path().display(), "the config cache is unusable; starting without it (a CP will send a fresh config; remove the file to start from declarative_config)")
        }
    }
    let Some(file) = &settings.declarative_config else {
        info!("no cached config and no declarative_config: serving an empty config until a control plane answers");
        return Ok(Current::local(ConfigState::new()));
    };
    let text = read_declarative(file)?;
    let opts = ParseOptions {
        now: unix_now(),
        entropy: entropy()?,
    };
    let parsed = declarative::parse(&text, opts).map_err(|e| {
        anyhow::anyhow!(
            "declarative_config {}:\n{}",
            file.display(),
            file_errors(file, &text, &e)
        )
    })?;
    let mut machine = Machine::new();
    let (outcome, _) = machine.execute(&Command {
        request_id: Uuid::nil(),
        fixed: Fixed {
            id: Uuid::nil(),
            now: opts.now,
            entropy: opts.entropy,
        },
        op: Op::Import {
            entities: parsed.entities,
        },
    });
    outcome.map_err(|e| {
        anyhow::anyhow!(
            "declarative_config {}:\n{}",
            file.display(),
            pretty_error(&e)
        )
    })?;
    let state = machine.config;
    info!(file = %file.display(), hash = %state.hash(), entities = state.len(), "serving declarative_config");
    Ok(Current::local(state))
}

/// The plugins this node runs: the bundled ones named by `plugins`. A custom build
/// registers its own plugins here too (see the README), so that the DP both runs them
/// and advertises them to the CP.
pub fn plugin_registry(settings: &Settings) -> tidegate_plugins::Registry {
    let mut r = tidegate_plugins::Registry::installed();
    r.retain(&settings.plugins);
    r
}

/// The plugins this DP advertises: those it runs, at their versions.
fn advertised_plugins(settings: &Settings) -> Vec<(String, String)> {
    let mut plugins = plugin_registry(settings).versions();
    debug_overrides::plugins(&mut plugins);
    plugins
}

/// Test hooks for the compatibility checks: debug builds only, so that a release build
/// cannot advertise anything but what it is.
mod debug_overrides {
    /// `TIDEGATE_DEBUG_DP_VERSION=x.y.z`
    pub fn version(v: String) -> String {
        #[cfg(debug_assertions)]
        if let Ok(o) = std::env::var("TIDEGATE_DEBUG_DP_VERSION") {
            return o;
        }
        v
    }

    /// `TIDEGATE_DEBUG_DP_PLUGIN_VERSIONS=name=x.y.z,…`
    #[allow(unused_variables)]
    pub fn plugins(plugins: &mut [(String, String)]) {
        #[cfg(debug_assertions)]
        if let Ok(o) = std::env::var("TIDEGATE_DEBUG_DP_PLUGIN_VERSIONS") {
            for item in o.split(',') {
                if let Some((name, v)) = item.split_once('=') {
                    for p in plugins.iter_mut().filter(|p| p.0 == name) {
                        p.1 = v.to_string();
                    }
                }
            }
        }
    }
}

/// A running sync client (and its status API), for `data_plane` and for the in-process
/// DP of `traditional`.
pub struct Running {
    pub node_id: Uuid,
    pub config: watch::Receiver<Arc<Current>>,
    pub status: watch::Receiver<tidegate_dp::sync::SyncStatus>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits for the tasks after `stop` turned true.
    pub async fn join(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                warn!(error = %e, "a data plane task failed");
            }
        }
    }
}

/// Starts the sync client with its cache in `cache_prefix`, dialling `addresses`
/// through `connect`.
pub async fn start(
    settings: &Settings,
    cache_prefix: &std::path::Path,
    addresses: Vec<String>,
    connect: Connect,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Running> {
    let mut cache = Cache::open(cache_prefix)?;
    let node_id = cache.node_id(|| entropy().unwrap_or(0).to_be_bytes())?;
    let initial = initial_config(settings, &mut cache)?;
    let hello = HelloInfo {
        node_id,
        hostname: hostname(),
        version: debug_overrides::version(env!("CARGO_PKG_VERSION").to_string()),
        plugins: advertised_plugins(settings),
        labels: settings.cluster.dp_labels.clone(),
    };
    let mut sync_settings = SyncSettings::new(addresses, hello, entropy()? as u64);
    sync_settings.max_payload = settings.cluster.max_payload;
    let sync = DpSync::new(sync_settings, cache, initial, connect);
    let config = sync.config();
    let status = sync.status();
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let tasks = vec![tokio::spawn(sync.run(stopped(stop)))];
    Ok(Running {
        node_id,
        config,
        status,
        tasks,
    })
}

/// Where a service with `tls_verify` and no `ca_certificates` finds its roots: Kong's
/// `lua_ssl_trusted_certificate = system`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Serves `proxy_listen` (unless `off`) with the config `config` holds, swapping as it
/// changes; stops taking connections when `stop` turns true and lets requests in flight
/// finish.
pub async fn start_proxy(
    settings: &Settings,
    config: watch::Receiver<Arc<Current>>,
    stats: Option<&std::sync::OnceLock<tidegate_proxy::ProxyStats>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if settings.proxy_listen.is_empty() {
        info!("proxy_listen = off: not proxying");
        return Ok(None);
    }
    let listeners = tidegate_proxy::bind(&settings.proxy_listen)
        .await
        .context("cannot listen on proxy_listen")?;
    let options = tidegate_proxy::ProxyOptions {
        request_id_seed: entropy()? as u64,
        trusted_ca_pem: std::fs::read_to_string(SYSTEM_CA_BUNDLE).ok(),
        plugins: plugin_registry(settings),
        real_ip: settings.real_ip.clone(),
        ..Default::default()
    };
    let proxy = tidegate_proxy::Proxy::start(config, |c: &Arc<Current>| c.state.clone(), options)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the proxy cannot serve the starting config: {e}; remove the config cache \
                 (or fix declarative_config) and let the control plane send a fresh one"
            )
        })?;
    if let Some(slot) = stats {
        let _ = slot.set(proxy.stats());
    }
    let addrs: Vec<String> = settings
        .proxy_listen
        .iter()
        .map(|l| format!("{}{}", l.addr, if l.ssl { " ssl" } else { "" }))
        .collect();
    info!(listen = ?addrs, "proxy listening");
    Ok(Some(tokio::spawn(async move {
        let served = proxy
            .serve(listeners, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            error!(error = %e, "the proxy stopped on an error");
        }
    })))
}

/// Serves `status_listen` when it is set.
pub async fn serve_status(
    settings: &Settings,
    sources: Sources,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = settings.status_listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on status_listen {addr}"))?;
    info!(%addr, "status API listening");
    Ok(Some(tokio::spawn(crate::status::serve(
        listener,
        sources,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ))))
}

/// `role = data_plane`.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.prefix)
        .with_context(|| format!("cannot create prefix {}", settings.prefix.display()))?;
    let tls = cluster_tls(&settings)?;
    let connect: Connect = Arc::new(move |addr: String| {
        let tls = tls.clone();
        Box::pin(async move { tidegate_tls::channel(&addr, &tls).await })
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = start(
        &settings,
        &settings.prefix,
        settings.cluster.control_planes.clone(),
        connect,
        stop_rx.clone(),
    )
    .await?;
    let sources = Sources {
        dp: Some(DpSources::new(
            running.config.clone(),
            running.status.clone(),
        )),
        cp: None,
    };
    let stats = sources.dp.as_ref().map(|dp| dp.proxy.clone());
    let status_server = serve_status(&settings, sources, stop_rx.clone()).await?;
    let proxy = start_proxy(&settings, running.config.clone(), stats.as_deref(), stop_rx).await?;
    info!(node_id = %running.node_id, control_planes = ?settings.cluster.control_planes, "data plane ready");
    terminated().await;
    let _ = stop_tx.send(true);
    running.join().await;
    if let Some(s) = status_server {
        let _ = s.await;
    }
    if let Some(p) = proxy {
        let _ = p.await;
    }
    info!("stopped");
    Ok(())
}
