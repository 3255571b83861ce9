//! The DP's sync client (DESIGN.md §4, §5): keeps one `Cluster::Sync` stream to a CP,
//! applies what it pushes off to the side, persists it, swaps it in, and reports.
//!
//! ```text
//!  addresses ─round robin─▶ connect ─▶ Hello ─▶ Ack ───────────▶ stream ─┐
//!      ▲                                  └──▶ Rejected ─▶ wait the cap │
//!      └──── backoff (exp., capped, jittered; reset after a good stream) ◀┘ ended / failed
//!
//!  stream: Snapshot / Events ─▶ working copy ─(burst drained)─▶ Cache::store ─▶ watch ─▶ Status
//!          cannot apply ─▶ SnapshotRequest (gap, apply failed, hash mismatch), old config kept
//!          every `heartbeat` ─▶ Status (version, hash of what is served)
//! ```
//!
//! [`DpSync::run`] is the one owner of the mutable sync state; the proxy sees only
//! immutable [`Current`]s through [`DpSync::config`], so a request holding one finishes
//! on it whatever is swapped in meanwhile. Time is `tokio::time` and randomness a seeded
//! RNG, so a simulation drives it deterministically.
//!
//! Choices beyond the brief:
//! - A failed cache store does not hold the config back: it is verified and the CP
//!   expects it, so it is served and reported, the error is logged and shown in
//!   [`SyncStatus::last_error`], and the store is retried at each heartbeat and apply.
//!   The cache stays the last good config on disk.
//! - A snapshot replaces what the DP holds even at a lower version (the CP is the
//!   authority; refusing would strand the DP), with a warning.
//! - A snapshot whose content does not hash to the hash it announces is refused with
//!   `HASH_MISMATCH` (a body that does not decode or rebuild: `APPLY_FAILED`).
//! - Events that arrive while the DP holds no config from the CP (declarative or empty)
//!   are a `VERSION_GAP`: their versions mean nothing on that base.
//! - After a SnapshotRequest, further unusable messages do not repeat it until a snapshot
//!   arrives or the next heartbeat, so a CP still streaming Events is not flooded.
//! - Heartbeats report what the DP serves even when it is not from the CP (the CP learns
//!   the DP is alive and, from the hash, that it is not in sync); the Status right after
//!   the Ack only when the config is from the CP.
//! - An outbound message that finds the bounded queue full ends the stream: the CP has
//!   stopped reading, and the Hello of the next stream says where the DP is.
//! - `SyncSettings::handshake_timeout` bounds connect + Hello → Ack; production channels
//!   should also set HTTP/2 keepalive, which is what notices a silently dead stream.

mod apply;
mod backoff;
mod session;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use tidegate_state::ConfigState;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::cache::Cache;
use crate::store::{ConfigStore, DiskStore};
pub use apply::MAX_DETAIL;
pub use backoff::Backoff;
use session::End;

/// `cluster_max_payload`'s default.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 << 20;
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(250);
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(10);
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the DP says about itself in its Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    pub node_id: Uuid,
    pub hostname: String,
    /// tidegate's version (semver).
    pub version: String,
    /// Installed plugins: (name, semver).
    pub plugins: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
}

/// Opens a tonic Channel to one CP address ("host:port"). Production passes one doing
/// mTLS (with HTTP/2 keepalive); tests and the simulator pass [`plaintext_connect`] or
/// their own transport.
pub type Connect = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Channel, String>> + Send>> + Send + Sync,
>;

/// A [`Connect`] without TLS, for tests.
pub fn plaintext_connect() -> Connect {
    Arc::new(|address: String| {
        Box::pin(async move {
            Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| format!("invalid address {address:?}: {e}"))?
                .connect_timeout(DEFAULT_HANDSHAKE_TIMEOUT)
                .connect()
                .await
                .map_err(|e| error_chain(&e))
        })
    })
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// CP addresses ("host:port"), tried in turn.
    pub addresses: Vec<String>,
    pub hello: HelloInfo,
    /// `cluster_max_payload`: the largest message received or sent, in bytes.
    pub max_payload: usize,
    /// How often the DP reports its version and hash while connected.
    pub heartbeat: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long connecting, sending the Hello and getting the answer may take.
    pub handshake_timeout: Duration,
    /// Seeds the backoff jitter.
    pub rng_seed: u64,
}

impl SyncSettings {
    /// The settings with every tunable at its default.
    pub fn new(addresses: Vec<String>, hello: HelloInfo, rng_seed: u64) -> Self {
        SyncSettings {
            addresses,
            hello,
            max_payload: DEFAULT_MAX_PAYLOAD,
            heartbeat: DEFAULT_HEARTBEAT,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            rng_seed,
        }
    }
}

/// What the DP serves. Swapped as a whole; a holder of an old `Arc` keeps using it.
#[derive(Debug, Clone)]
pub struct Current {
    pub state: Arc<ConfigState>,
    /// Received from a CP (now or before a restart, through the cache); a declarative or
    /// empty config is not, and the Hello then asks for a snapshot.
    pub from_cluster: bool,
}

impl Current {
    /// A config loaded from the cache: the CP's, as of when it was stored.
    pub fn from_cache(state: ConfigState) -> Self {
        Current {
            state: Arc::new(state),
            from_cluster: true,
        }
    }

    /// A declarative or empty config.
    pub fn local(state: ConfigState) -> Self {
        Current {
            state: Arc::new(state),
            from_cluster: false,
        }
    }
}

/// The sync's state, for logs, tests and the status endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// The CP address of the accepted stream, while there is one.
    pub connected_to: Option<String>,
    /// The latest failure ("address: error", or a cache store error). Not cleared by a
    /// later success: it says why the last disconnection happened.
    pub last_error: Option<String>,
    /// (sync_status, reason) of the latest rejection; cleared by the next Ack.
    pub rejected: Option<(String, String)>,
    /// The version of the config from the CP being served, if it is from the CP.
    pub applied_version: Option<u64>,
}

/// The sync client. Build it, hand [`Self::config`] to the proxy, then [`Self::run`] it.
pub struct DpSync {
    settings: SyncSettings,
    connect: Connect,
    backoff: Backoff,
    applier: apply::Applier,
    status: watch::Sender<SyncStatus>,
}

// === impl DpSync ===

impl DpSync {
    /// `initial` is what the DP serves until the CP sends something: from the cache
    /// ([`Current::from_cache`]) or a declarative file / empty ([`Current::local`]).
    pub fn new(settings: SyncSettings, cache: Cache, initial: Current, connect: Connect) -> Self {
        Self::with_store(settings, Arc::new(DiskStore::new(cache)), initial, connect)
    }

    /// The same client over another [`ConfigStore`] (the simulator's in-memory disk).
    pub fn with_store(
        settings: SyncSettings,
        store: Arc<dyn ConfigStore>,
        initial: Current,
        connect: Connect,
    ) -> Self {
        let status = SyncStatus {
            applied_version: initial.from_cluster.then(|| initial.state.version()),
            ..SyncStatus::default()
        };
        DpSync {
            backoff: Backoff::new(
                settings.backoff_base,
                settings.backoff_cap,
                settings.rng_seed,
            ),
            settings,
            connect,
            applier: apply::Applier::new(initial, store),
            status: watch::Sender::new(status),
        }
    }

    /// The config to serve, swapped atomically after each persisted apply.
    pub fn config(&self) -> watch::Receiver<Arc<Current>> {
        self.applier.subscribe()
    }

    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// Syncs until `shutdown` resolves. Returns promptly then: an apply in progress is
    /// dropped (a cache store already started completes on its own, atomically).
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => return,
            () = self.reconnect_forever() => {}
        }
        shutdown.await;
    }

    /// Returns only when there is no address to try.
    async fn reconnect_forever(&mut self) {
        let count = self.settings.addresses.len();
        if count == 0 {
            tracing::warn!("no control plane address: serving the local config only");
            return;
        }
        for attempt in 0usize.. {
            let address = self.settings.addresses[attempt % count].clone();
            let end = self.attempt(&address).await;
            let delay = self.after(&address, end);
            tokio::time::sleep(delay).await;
        }
    }

    /// Records how a stream ended and picks the delay before the next attempt.
    fn after(&mut self, address: &str, end: End) -> Duration {
        self.status.send_modify(|s| s.connected_to = None);
        match end {
            End::Rejected {
                sync_status,
                reason,
            } => {
                self.backoff.max_out();
                let delay = self.backoff.next_delay();
                tracing::error!(
                    address,
                    sync_status,
                    reason,
                    retry_in = ?delay,
                    "the control plane rejected this data plane; serving the config it has, retrying later"
                );
                self.status
                    .send_modify(|s| s.rejected = Some((sync_status, reason)));
                delay
            }
            End::Failed { error, healthy } => {
                if healthy {
                    self.backoff.reset();
                }
                let delay = self.backoff.next_delay();
                tracing::warn!(
                    address,
                    error,
                    retry_in = ?delay,
                    "no sync with the control plane; serving the config it has, retrying"
                );
                self.status
                    .send_modify(|s| s.last_error = Some(format!("{address}: {error}")));
                delay
            }
        }
    }
}

/// An error with its sources, for one log field.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
