//! The data plane: the crash-safe config cache and node id kept in `prefix`, and the sync
//! client that follows the control plane (DESIGN.md §4, §5). The proxy comes next.
//!
//! ```text
//!  start ──▶ Cache::load ──▶ Some(config, hash verified) ──▶ Current::from_cache ─┐
//!                 └──────▶ None ──▶ declarative_config, else empty ─▶ Current::local ─┤
//!                                                                                  ▼
//!  CP ◀══ Cluster::Sync (Hello, Status, SnapshotRequest) ══ DpSync::run ──watch──▶ proxy
//!     ══ (Ack | Rejected, Snapshot, Events) ══════════════▶   │ apply off to the side
//!                                                             ▼
//!       Cache::append (the Events to config.journal, fdatasync) or Cache::store (whole
//!       config: temp, fsync, rename, fsync dir; new journal), then swap
//! ```

pub mod cache;
#[doc(hidden)]
pub mod planted;
pub mod store;
pub mod sync;

pub use cache::{
    decode_file, encode_file, read_file, write_file, Cache, CacheError, CacheFile, Corruption,
    Loaded, Point, Replay, CACHE_FILE, DEFAULT_MAX_BYTES, FILE_FORMAT, JOURNAL_FILE, MAGIC,
    NODE_ID_FILE, PREVIOUS_FILE,
};
pub use store::{ConfigStore, Delta, DiskStore, StoreFuture};
pub use sync::{
    plaintext_connect, Backoff, Connect, Current, DpSync, HelloInfo, SyncSettings, SyncStatus,
};
