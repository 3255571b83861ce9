//! `tidegate start`: wires the roles that exist today (traditional and control_plane:
//! Raft on its write-ahead log and sled, the Raft link, the Admin API, the cluster console on `admin_gui_listen`)
//! and runs until SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::{bail, Context};
use ring::rand::{SecureRandom, SystemRandom};
use tidegate_cp::node::{
    initial_members, initialize_if_first, Clock, Entropy, NodeSettings, RaftNode,
    DEFAULT_APPLY_WAIT, DEFAULT_LEADER_WAIT,
};
use tidegate_cp::sync::{SyncService, SyncSettings};
use tidegate_cp::NodeInfo;
use tidegate_dp::sync::Connect;
use tidegate_proto::cluster::cluster_server::ClusterServer;
use tidegate_raft::network::{Network, RaftTls};
use tidegate_raft::{Proposer, Raft};
use tidegate_tls::ClusterTls;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::settings::{Role, Settings};

/// The real clock: only the binary reads it.
pub struct SystemClock;

impl SystemClock {
    pub fn now(&self) -> i64 {
        crate::config_cmd::unix_now()
    }
}

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        self.now()
    }
}

/// The operating system's random source.
struct OsEntropy(SystemRandom);

impl Entropy for OsEntropy {
    fn next_u128(&self) -> u128 {
        let mut b = [0u8; 16];
        // The OS source failing is not something a gateway can work around.
        self.0
            .fill(&mut b)
            .expect("the operating system's random source works");
        u128::from_be_bytes(b)
    }
}

fn read_tls(settings: &Settings) -> anyhow::Result<Option<RaftTls>> {
    let Some(files) = &settings.raft_tls else {
        return Ok(None);
    };
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {what} {}", p.display()))
    };
    Ok(Some(RaftTls {
        cert: read(&files.cert, "raft_cert")?,
        key: read(&files.key, "raft_cert_key")?,
        ca: read(&files.ca, "raft_ca_cert")?,
    }))
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, draining"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, draining"),
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let role = match settings.role {
        Role::Traditional => "traditional",
        Role::ControlPlane => "control_plane",
        Role::DataPlane => return crate::data_plane::run(settings).await,
    };
    std::fs::create_dir_all(&settings.prefix)
        .with_context(|| format!("cannot create prefix {}", settings.prefix.display()))?;
    let entropy = OsEntropy(SystemRandom::new());
    // The same `prefix/node_id` file (and code) a DP keeps its id in.
    let node_uuid = tidegate_dp::Cache::open(&settings.prefix)?
        .node_id(|| entropy.next_u128().to_be_bytes())?;

    let raft_dir = settings.prefix.join("raft");
    let (log, sm) = tidegate_raft::open_disk(&raft_dir).map_err(|e| {
        anyhow::anyhow!("cannot open the Raft store in {}: {e}", raft_dir.display())
    })?;
    let reader = sm.reader();
    let tls = read_tls(&settings)?;
    let network = Network::new(tls.clone());
    let config = Arc::new(tidegate_raft::raft_config("tidegate"));
    let raft = Raft::new(settings.raft_node_id, config, network.clone(), log, sm)
        .await
        .context("cannot start Raft")?;
    let proposer = Proposer::new(raft.clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let mut raft_server = None;
    if let Some(tls) = tls {
        let listener = tokio::net::TcpListener::bind(settings.raft_listen)
            .await
            .with_context(|| format!("cannot listen on raft_listen {}", settings.raft_listen))?;
        info!(addr = %settings.raft_listen, "raft listening");
        let p = proposer.clone();
        let shutdown = stopped(stop_rx.clone());
        raft_server = Some(tokio::spawn(async move {
            if let Err(e) = tidegate_raft::network::serve(listener, p, tls, shutdown).await {
                error!(error = %e, "the Raft listener failed");
            }
        }));
    }

    let members = initial_members(
        settings.raft_node_id,
        &settings.raft_advertise,
        &settings.raft_peers,
    );
    match initialize_if_first(&raft, settings.raft_node_id, members).await {
        Ok(true) => info!(
            node = settings.raft_node_id,
            "initialized a new control plane group"
        ),
        Ok(false) => info!(
            node = settings.raft_node_id,
            "joining the control plane group"
        ),
        Err(e) => bail!("cannot initialize the control plane group: {e}"),
    }

    let info = NodeInfo {
        node_id: node_uuid,
        hostname: hostname(),
        role: role.to_string(),
        tidegate_version: env!("CARGO_PKG_VERSION").to_string(),
        admin_listen: vec![settings.admin_listen.to_string()],
    };
    let node = Arc::new(
        RaftNode::new(
            proposer,
            reader,
            network,
            NodeSettings {
                node_id: settings.raft_node_id,
                info,
                leader_wait: DEFAULT_LEADER_WAIT,
                apply_wait: DEFAULT_APPLY_WAIT,
            },
            Arc::new(SystemClock),
            Arc::new(entropy),
        )
        .with_enabled_plugins(settings.plugins.clone()),
    );

    let service = sync_service(&settings, node.clone(), stop_rx.clone());
    let flusher = service.take_flusher();
    let (cluster_server, in_process_dp) = match settings.role {
        Role::ControlPlane => (
            Some(start_cluster_listener(&settings, service, stopped(stop_rx.clone())).await?),
            None,
        ),
        // The same event stream a remote DP gets, over an in-memory pipe.
        _ => {
            let connect = in_process_connect(service.into_server(), stopped(stop_rx.clone()));
            let dp = crate::data_plane::start(
                &settings,
                &settings.prefix.join("dp"),
                vec![IN_PROCESS.to_string()],
                connect,
                stop_rx.clone(),
            )
            .await?;
            (None, Some(dp))
        }
    };

    let sources = crate::status::Sources {
        dp: in_process_dp
            .as_ref()
            .map(|dp| crate::status::DpSources::new(dp.config.clone(), dp.status.clone())),
        cp: Some(node.clone()),
    };
    let stats = sources.dp.as_ref().map(|dp| dp.proxy.clone());
    let status_server =
        crate::data_plane::serve_status(&settings, sources, stop_rx.clone()).await?;
    let proxy = match &in_process_dp {
        Some(dp) => {
            crate::data_plane::start_proxy(
                &settings,
                dp.config.clone(),
                stats.as_deref(),
                stop_rx.clone(),
            )
            .await?
        }
        None => None,
    };

    let admin = tokio::net::TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("cannot listen on admin_listen {}", settings.admin_listen))?;
    let console = match settings.admin_gui_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on admin_gui_listen {addr} (the cluster console; \
                 admin_gui_listen = off disables it)"
            )
        })?),
        None => None,
    };
    info!(role, node = settings.raft_node_id, "control plane ready");
    let admin_server = tokio::spawn(tidegate_cp::admin::serve(
        admin,
        node.clone(),
        stopped(stop_rx.clone()),
    ));
    let console_server = console.map(|listener| {
        tokio::spawn(tidegate_cp::console::serve(
            listener,
            node.clone(),
            stopped(stop_rx.clone()),
        ))
    });

    // A fatal Raft error (storage) is logged loudly and turns /status red; the node keeps
    // serving reads rather than retrying writes silently.
    let mut metrics = raft.metrics();
    let stopping = stop_rx.clone();
    tokio::spawn(async move {
        if metrics.wait_for(|m| m.running_state.is_err()).await.is_ok() && !*stopping.borrow() {
            let state = metrics.borrow().running_state.clone();
            error!(error = ?state, "Raft stopped on a fatal error: writes are refused and /status answers 503; check the disk under the prefix, then restart the node");
        }
    });
    terminated().await;
    let _ = stop_tx.send(true);
    match admin_server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "admin API stopped with an error"),
        Err(e) => warn!(error = %e, "admin API task failed"),
    }
    if let Some(s) = console_server {
        match s.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cluster console stopped with an error"),
            Err(e) => warn!(error = %e, "cluster console task failed"),
        }
    }
    if let Some(s) = raft_server {
        let _ = s.await;
    }
    if let Some(s) = cluster_server {
        let _ = s.await;
    }
    if let Some(dp) = in_process_dp {
        dp.join().await;
    }
    if let Some(f) = flusher {
        let _ = f.await;
    }
    if let Some(s) = status_server {
        let _ = s.await;
    }
    if let Some(p) = proxy {
        let _ = p.await;
    }
    raft.shutdown().await.ok();
    info!("stopped");
    Ok(())
}

/// The cluster credentials from `cluster_cert`, `cluster_cert_key`, `cluster_ca_cert`.
pub fn cluster_tls(settings: &Settings) -> anyhow::Result<ClusterTls> {
    let c = &settings.cluster;
    let read = |p: &Option<std::path::PathBuf>, what: &str| -> anyhow::Result<Option<String>> {
        p.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {what} {}", p.display()))
            })
            .transpose()
    };
    let cert = read(&c.cert, "cluster_cert")?.context("cluster_cert is not set")?;
    let key = read(&c.key, "cluster_cert_key")?.context("cluster_cert_key is not set")?;
    let ca = read(&c.ca, "cluster_ca_cert")?;
    Ok(ClusterTls::from_pem(
        &c.mtls,
        &cert,
        &key,
        ca.as_deref(),
        c.server_name.as_deref(),
    )?)
}

/// The DP sync service of this CP (its status flusher starts now).
fn sync_service(
    settings: &Settings,
    node: Arc<RaftNode>,
    stop: watch::Receiver<bool>,
) -> SyncService<RaftNode> {
    let version =
        semver::Version::parse(env!("CARGO_PKG_VERSION")).expect("the crate version is semver");
    let plugins = tidegate_cp::compat::plugin_versions(&tidegate_model::plugins::installed());
    let mut sync = SyncSettings::new(settings.raft_node_id, version, plugins);
    sync.max_payload = settings.cluster.max_payload;
    sync.flush.purge_delay = std::time::Duration::from_secs(settings.cluster.purge_delay_secs);
    SyncService::new(
        sync,
        node.reader().clone(),
        node,
        Arc::new(SystemClock),
        stop,
    )
}

/// Serves DP sync on `cluster_listen` with mutual TLS.
async fn start_cluster_listener(
    settings: &Settings,
    service: SyncService<RaftNode>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let tls = cluster_tls(settings)?;
    let listener = tokio::net::TcpListener::bind(settings.cluster.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on cluster_listen {}",
                settings.cluster.listen
            )
        })?;
    info!(addr = %settings.cluster.listen, mtls = %settings.cluster.mtls, "cluster listening for data planes");
    let incoming = tidegate_tls::incoming(listener, tls.server_config()?);
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(tidegate_tls::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(tidegate_tls::KEEPALIVE_TIMEOUT))
            .add_service(service.into_server())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(e) = served {
            error!(error = %e, "the cluster listener failed");
        }
    }))
}

/// The address the in-process DP of `traditional` "dials".
const IN_PROCESS: &str = "in-process";

/// A DP [`Connect`] that reaches `server` through in-memory pipes: `traditional` runs
/// the very sync protocol a remote DP does, minus TCP and TLS.
fn in_process_connect(
    server: ClusterServer<SyncService<RaftNode>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Connect {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<tokio::io::DuplexStream>>(4);
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(rx), shutdown)
            .await;
        if let Err(e) = served {
            error!(error = %e, "the in-process sync service failed");
        }
    });
    Arc::new(move |_addr: String| {
        let tx = tx.clone();
        Box::pin(async move {
            let connector = tower::service_fn(move |_: tonic::transport::Uri| {
                let tx = tx.clone();
                async move {
                    let (client, server) = tokio::io::duplex(1 << 16);
                    tx.send(Ok(server)).await.map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the node is stopping")
                    })?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
                }
            });
            tonic::transport::Endpoint::from_static("http://in-process")
                .connect_with_connector(connector)
                .await
                .map_err(|e| format!("in-process sync: {e}"))
        })
    })
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Maps Kong's log levels onto tracing's.
pub fn init_tracing(level: &str) {
    let filter = match level {
        "debug" => "debug",
        "info" | "notice" => "info",
        "warn" => "warn",
        _ => "error",
    };
    let filter = format!("{filter},openraft=warn,sled=warn,h2=warn,hyper=warn,tower=warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
