//! openraft glue for tidegate's control plane: the type config, the replicated state
//! machine over `tidegate_state::Machine`, the CPs' disk store (the log in a write-ahead
//! log, snapshots in sled) and an in-memory store for tests and the simulator (optionally losing un-synced writes on a crash), and the
//! runtime that makes elections replayable from a seed.
//!
//! ```text
//!   client_write(Command) ──▶ log store (WAL | memory) ──committed──▶ StateMachine::apply
//!                                                                        │ Machine::execute
//!                                    StateReader ◀── Arc<RwLock<Core>> ◀─┘ Events → tail
//!                                    (reads, events_since, applied watch)
//! ```
//!
//! `network` carries Raft RPCs (and Commands forwarded to the leader) over tonic with
//! mutual TLS; `Proposer` groups the leader's concurrent client writes into one entry
//! (group commit); the CP's write path lives in `tidegate-cp`.

// `StorageError` is openraft's, and its traits return it: boxing it here would only add
// conversions at every call.
#![allow(clippy::result_large_err)]

mod disk;
mod mem;
pub mod network;
pub mod planted;
mod proposer;
mod runtime;
mod sm;
mod types;
mod wal;

use std::ops::{Bound, RangeBounds};

pub use disk::{open_disk, open_disk_with_event_tail, SledSnapshots, SledStateMachine};
pub use mem::{MemLogStore, MemStateMachine, MemStorage};
pub use proposer::{ProposeError, Proposer, Written};
pub use runtime::{seed_thread_rng, SeededRng, SeededRuntime};
pub use sm::{
    Applied, SnapshotBuilder, SnapshotStore, StateMachine, StateReader, StoredSnapshot,
    DEFAULT_EVENT_TAIL,
};
pub use types::{
    Entry, LogId, NodeId, Raft, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};
pub use wal::{WalLogStore, WAL_DIR};

/// The recommended Raft settings for a CP group named `cluster_name`.
///
/// Heartbeats every 250 ms, elections after 800–1600 ms of silence: tolerant of a busy
/// 2-core node without leaving a group leaderless for long. A snapshot every 5 000 entries
/// keeps restarts short; 1 000 entries stay behind it so a briefly lagging follower
/// catches up from the log rather than by a snapshot. A snapshot chunk (3 MiB) gets 2 s
/// instead of openraft's 200 ms, which a TLS link between sites can miss every time.
pub fn raft_config(cluster_name: &str) -> openraft::Config {
    openraft::Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: 250,
        election_timeout_min: 800,
        election_timeout_max: 1600,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
        max_in_snapshot_log_to_keep: 1_000,
        install_snapshot_timeout: 2_000,
        ..Default::default()
    }
    .validate()
    .expect("the recommended raft config is valid")
}

/// The postcard bytes of a Raft type (entries, votes, log ids, RPC messages), for the
/// disk and the wire alike.
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("raft types encode infallibly")
}

/// A log index range as inclusive bounds, or None when it is empty.
pub(crate) fn index_bounds(range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let lo = match range.start_bound() {
        Bound::Included(&x) => x,
        Bound::Excluded(&x) => x.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(&x) => x,
        Bound::Excluded(&x) => x.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests;
