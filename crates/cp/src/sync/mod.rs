//! The CP side of CP ↔ DP sync (DESIGN.md §4): the `Cluster.Sync` gRPC service.
//!
//! One session per DP stream. The session owns what it has sent that DP and pulls from
//! the state machine whenever a new version is applied, so there is no queue of Events
//! per DP to grow: a DP that reads slowly is sent everything since its version in one
//! message when it is ready, and a DP further behind than the Event tail gets a snapshot.
//!
//! ```text
//!  Hello ─▶ validate ─▶ check_version ─▶ Rejected (recorded, warn line) ─▶ close
//!                             │ ok
//!                             ▼
//!                            Ack ─▶ loop { applied changed │ DP Status │ SnapshotRequest }
//!                                          └─▶ check_plugins(config) ─▶ hold back + warn
//!                                          └─▶ Events since sent version │ Snapshot
//!  sessions ─▶ Registry ─▶ flusher ─▶ Op::DataPlanes through Raft ─▶ every CP's table
//! ```

mod fanout;
mod registry;
mod session;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use semver::Version;
use tidegate_proto::cluster::cluster_server::{Cluster, ClusterServer};
use tidegate_proto::cluster::{CpMessage, DpMessage};
use tidegate_raft::StateReader;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::Backend;
use crate::node::Clock;

pub use registry::FlushSettings;
pub(crate) use registry::Registry;

/// Messages waiting to be written to one DP. Small on purpose: a slow DP makes its
/// session wait, and the session then sends one coalesced catch-up instead of a backlog.
const OUTBOUND_QUEUE: usize = 4;
/// A connected DP's row is re-recorded this often even when nothing changed.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);
/// A row not refreshed for this long reads as disconnected: its CP is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * 30);

/// At most this many Events in one message.
const MAX_EVENTS_PER_MESSAGE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// This CP's Raft node id, shown as the CP a DP talks to.
    pub cp_id: u64,
    pub cp_version: Version,
    /// Installed plugins with versions, for the check at every push.
    pub cp_plugins: BTreeMap<String, Version>,
    /// `cluster_max_payload`: the largest message either way.
    pub max_payload: usize,
    /// How many DP streams this CP holds at once.
    pub max_data_planes: usize,
    /// How long a new stream may take to say Hello.
    pub hello_timeout: Duration,
    /// A DP silent for this long (no heartbeat) is dropped; it reconnects if alive.
    pub idle_timeout: Duration,
    /// How long to wait for this CP to reach the version a DP already holds (a lagging
    /// follower) before replacing the DP's config with a snapshot (a DP from a rebuilt
    /// cluster).
    pub newer_dp_wait: Duration,
    pub flush: FlushSettings,
}

impl SyncSettings {
    pub fn new(cp_id: u64, cp_version: Version, cp_plugins: BTreeMap<String, Version>) -> Self {
        SyncSettings {
            cp_id,
            cp_version,
            cp_plugins,
            max_payload: 16 << 20,
            max_data_planes: 10_000,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            newer_dp_wait: Duration::from_secs(10),
            flush: FlushSettings {
                interval: Duration::from_secs(1),
                refresh: STATUS_REFRESH,
                purge_delay: Duration::from_secs(14 * 86_400),
            },
        }
    }
}

pub(crate) struct Shared<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) settings: SyncSettings,
    pub(crate) reader: StateReader,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) registry: Registry,
    /// Per-version results shared by the sessions (encoded Events and snapshot).
    pub(crate) fanout: fanout::Fanout,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The gRPC service. Build it with [`SyncService::new`], serve it with
/// [`SyncService::into_server`] on the cluster listener.
pub struct SyncService<B> {
    shared: Arc<Shared<B>>,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<B: Backend> SyncService<B> {
    /// Also starts the status flusher, which stops when `shutdown` turns true.
    pub fn new(
        settings: SyncSettings,
        reader: StateReader,
        backend: Arc<B>,
        clock: Arc<dyn Clock>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let registry = Registry::default();
        let flusher = tokio::spawn(registry::flush_loop(
            registry.clone(),
            backend.clone(),
            clock.clone(),
            settings.flush.clone(),
            shutdown.clone(),
        ));
        SyncService {
            flusher: std::sync::Mutex::new(Some(flusher)),
            shared: Arc::new(Shared {
                backend: backend.clone(),
                settings,
                reader,
                clock,
                registry,
                fanout: fanout::Fanout::default(),
                shutdown,
            }),
        }
    }

    /// The status flusher: await it after `shutdown` turned true and before Raft stops,
    /// so the DPs' last status (disconnected) is recorded.
    pub fn take_flusher(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub fn into_server(self) -> ClusterServer<Self> {
        let max = self.shared.settings.max_payload;
        ClusterServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

type Outbound = Pin<Box<dyn tokio_stream::Stream<Item = Result<CpMessage, Status>> + Send>>;

#[tonic::async_trait]
impl<B: Backend> Cluster for SyncService<B> {
    type SyncStream = Outbound;

    async fn sync(
        &self,
        request: Request<Streaming<DpMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        if self.shared.registry.connected() >= self.shared.settings.max_data_planes {
            return Err(Status::resource_exhausted(format!(
                "this control plane already serves {} data planes; connect to another one",
                self.shared.settings.max_data_planes
            )));
        }
        let peer = session::Peer::of(&request);
        let inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(session::run(self.shared.clone(), peer, inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
