//! The store a CP runs on, in its `raft` directory: the Raft log, vote and committed id
//! in a write-ahead log ([`crate::wal`], one `fdatasync` per append), the latest snapshot
//! in sled (tree `snapshot`). The state machine itself is the in-memory core of
//! [`crate::sm`]: the config lives in memory on every node anyway, so writing it to disk
//! entry by entry would only double the IO. A restart loads the latest snapshot and
//! openraft re-applies the committed entries after it, as far as the stored committed id
//! reaches (the rest once the group commits again).
//!
//! A store written by an older tidegate kept the log in sled too (trees `log` and
//! `raft_meta`); the first open moves it into the write-ahead log, then empties those
//! trees.
//!
//! A snapshot is durable before it is reported: sled's flush *and* an `fdatasync` of
//! sled's file (sled 0.34 ends a flush with `sync_file_range`, which neither commits the
//! file's metadata nor flushes the disk's write cache). Errors are returned as
//! `StorageError`, which stops the Raft instance: never retried silently.

use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, StorageIOError};
use serde::de::DeserializeOwned;

use crate::encode;
use crate::sm::{SnapshotStore, StateMachine, StoredSnapshot, DEFAULT_EVENT_TAIL};
use crate::types::{Entry, LogId, StorageError, Vote};
use crate::wal::{Migrated, WalLogStore};

// Where an older store kept the log, in sled.
const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";
const CURRENT: &[u8] = b"current";

pub type SledStateMachine = StateMachine<SledSnapshots>;

/// Opens (or creates) the store in `path`.
///
/// sled locks the directory until every handle is dropped; openraft's worker tasks drop
/// theirs shortly after `Raft::shutdown` returns, so an in-process reopen may have to
/// retry briefly.
pub fn open_disk(path: impl AsRef<Path>) -> Result<(WalLogStore, SledStateMachine), StorageError> {
    open_disk_with_event_tail(path, DEFAULT_EVENT_TAIL)
}

pub fn open_disk_with_event_tail(
    path: impl AsRef<Path>,
    event_tail: usize,
) -> Result<(WalLogStore, SledStateMachine), StorageError> {
    let path = path.as_ref();
    let db = sled::Config::new()
        .path(path)
        .open()
        .map_err(|e| StorageIOError::read(&e))?;
    // sled 0.34 keeps everything in one file, `db`; fdatasync works on the file, not on
    // the descriptor, so a handle of our own covers sled's writes.
    let file = std::fs::File::open(path.join("db")).map_err(|e| StorageIOError::read(&e))?;
    let durable = Durable(Arc::new((db.clone(), file)));
    let tree = |name: &str| {
        db.open_tree(name)
            .map_err(|e| StorageError::from(StorageIOError::read(&e)))
    };
    let (old_log, old_meta) = (tree("log")?, tree("raft_meta")?);
    let log = WalLogStore::open(path, || from_sled(&old_log, &old_meta))
        .map_err(|e| StorageIOError::read_logs(&e))?;
    // Moved (now or by an earlier open): sled's copy goes.
    if !old_log.is_empty() || !old_meta.is_empty() {
        old_log
            .clear()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        old_meta
            .clear()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        db.flush().map_err(|e| StorageIOError::write_logs(&e))?;
    }
    let snapshots = SledSnapshots {
        tree: tree("snapshot")?,
        durable,
    };
    let sm = StateMachine::open(snapshots, event_tail)?;
    Ok((log, sm))
}

/// What an older store kept in sled, for the new log's start.
fn from_sled(log: &sled::Tree, meta: &sled::Tree) -> std::io::Result<Option<Migrated>> {
    fn get<T: DeserializeOwned>(meta: &sled::Tree, name: &[u8]) -> std::io::Result<Option<T>> {
        match meta.get(name).map_err(std::io::Error::other)? {
            Some(bytes) => decode(&bytes).map(Some).map_err(std::io::Error::other),
            None => Ok(None),
        }
    }
    if log.is_empty() && meta.is_empty() {
        return Ok(None);
    }
    let purged: Option<LogId> = get(meta, LAST_PURGED)?;
    let mut entries = Vec::new();
    for kv in log.iter() {
        let (_, v) = kv.map_err(std::io::Error::other)?;
        let entry: Entry = decode(&v).map_err(std::io::Error::other)?;
        // A purge interrupted between its marker and the removal left these.
        if Some(entry.log_id.index) > purged.map(|p| p.index) {
            entries.push(entry);
        }
    }
    Ok(Some(Migrated {
        vote: get::<Vote>(meta, VOTE)?,
        committed: get::<Option<LogId>>(meta, COMMITTED)?.flatten(),
        purged,
        entries,
    }))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// sled's database and its file, to make every tree's writes durable at once.
#[derive(Clone)]
struct Durable(Arc<(sled::Db, std::fs::File)>);

impl Durable {
    /// sled's flush writes its buffers and `sync_file_range`s them; the `fdatasync` then
    /// commits metadata and the disk cache. Both block, so both run on one blocking
    /// thread rather than on a runtime worker.
    async fn flush(&self) -> std::io::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (db, file) = &*this.0;
            db.flush().map_err(std::io::Error::other)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The latest snapshot, in sled.
pub struct SledSnapshots {
    tree: sled::Tree,
    durable: Durable,
}

impl SnapshotStore for SledSnapshots {
    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        fn read(e: &(dyn std::error::Error + 'static)) -> StorageError {
            StorageIOError::read_snapshot(None, AnyError::from_dyn(e, None)).into()
        }
        let Some(bytes) = self.tree.get(CURRENT).map_err(|e| read(&e))? else {
            return Ok(None);
        };
        decode(&bytes).map(Some).map_err(|e| read(&e))
    }

    async fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let write = |e: &(dyn std::error::Error + 'static)| {
            StorageIOError::write_snapshot(
                Some(snapshot.meta.signature()),
                AnyError::from_dyn(e, None),
            )
        };
        self.tree
            .insert(CURRENT, encode(snapshot))
            .map_err(|e| write(&e))?;
        self.durable.flush().await.map_err(|e| write(&e))?;
        Ok(())
    }
}
