//! The event-sourced core of tidegate's configuration.
//!
//! A [`Command`] (an admin mutation, with its request id and the id/time/entropy fixed by
//! the proposing node) is checked against the current [`ConfigState`] and becomes either
//! a Kong error body or a list of [`Event`]s with consecutive config versions. The CP runs
//! [`Machine::execute`] inside Raft's `apply`; a DP runs [`ConfigState::apply`] on the
//! Events it receives. Both run this same code, so their config hashes agree.
//!
//! Pure and deterministic: no I/O, no clocks, no randomness, no hash-map iteration order.
//!
//! ```text
//!   Command ──execute──▶ Result<Vec<Event>, KongError> ──apply──▶ ConfigState (version, hash)
//!                                  │                                   │
//!                                  └──────── codec (postcard) ─────────┴──▶ Snapshot
//! ```

mod codec;
mod command;
mod data_planes;
mod event;
mod machine;
#[doc(hidden)]
pub mod planted;
mod requests;
mod shards;
mod state;

pub use codec::{
    decode_event, decode_snapshot, decode_state, encode_event, encode_snapshot, encode_state,
    CodecError, SnapshotError, ENTITY_SCHEMA, SNAPSHOT_FORMAT,
};
pub use command::{Command, EntityRef, Op, MAX_BATCH_OPS, MAX_GROUP_COMMANDS};
pub use data_planes::{DataPlanes, DpReport, SentCounters, MAX_DATA_PLANES, MAX_REPORTS_PER_BATCH};
pub use event::{Change, Event};
pub use machine::{import_changes, resolve, Applied, Machine, Outcome};
pub use requests::{RequestLog, DEFAULT_REQUEST_LOG_CAPACITY};
pub use state::{ConfigState, StateError};

/// The whole config at one version: what a DP that fell behind receives, and what the
/// CP's Raft snapshot holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: u64,
    pub hash: tidegate_model::ConfigHash,
    /// In load order (parents before children), then by id.
    pub entities: Vec<tidegate_model::Entity>,
}
