//! The sled store a CP runs on.
//!
//! sled holds the Raft log (tree `log`: big-endian index → postcard entry), the vote, the
//! committed log id and the last purged log id (tree `raft_meta`), and the latest snapshot
//! (tree `snapshot`). The state machine itself is the in-memory core of [`crate::sm`]: the
//! config lives in memory on every node anyway, so writing it to sled entry by entry would
//! only double the IO. A restart loads the latest snapshot and openraft re-applies the
//! committed entries after it, as far as the stored committed id reaches (the rest once
//! the group commits again).
//!
//! Every write that openraft relies on is durable before it is acknowledged: `append`
//! before calling the `LogFlushed` callback, `save_vote`, `truncate` and `purge` before
//! returning, a snapshot before it is reported. Durable means sled's flush *and* an
//! `fdatasync` of sled's file: sled 0.34 ends a flush with `sync_file_range`, which
//! neither commits the file's metadata nor flushes the disk's write cache, so a power
//! loss could take acknowledged writes with it. `save_committed` is not flushed on its
//! own: openraft treats the committed id as optional (a lower one only means replaying
//! more at restart), and sled recovers a prefix of its writes, so it becomes durable with
//! the next append's flush and never ahead of the entries it covers. Errors are returned
//! as `StorageError`, which stops the Raft instance: never retried silently.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::sm::{SnapshotStore, StateMachine, StoredSnapshot, DEFAULT_EVENT_TAIL};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

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
pub fn open_sled(path: impl AsRef<Path>) -> Result<(SledLogStore, SledStateMachine), StorageError> {
    open_sled_with_event_tail(path, DEFAULT_EVENT_TAIL)
}

pub fn open_sled_with_event_tail(
    path: impl AsRef<Path>,
    event_tail: usize,
) -> Result<(SledLogStore, SledStateMachine), StorageError> {
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
    let log = SledLogStore {
        log: tree("log")?,
        meta: tree("raft_meta")?,
        durable: durable.clone(),
    };
    log.drop_purged_leftovers()?;
    let snapshots = SledSnapshots {
        tree: tree("snapshot")?,
        durable,
    };
    let sm = StateMachine::open(snapshots, event_tail)?;
    Ok((log, sm))
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("raft types encode infallibly")
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

/// The Raft log, vote and commit index; also its own log reader (clones share the trees).
#[derive(Clone)]
pub struct SledLogStore {
    log: sled::Tree,
    meta: sled::Tree,
    durable: Durable,
}

impl Debug for SledLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLogStore")
            .field("entries", &self.log.len())
            .finish()
    }
}

impl SledLogStore {
    fn get_meta<T: DeserializeOwned>(&self, name: &[u8]) -> Result<Option<T>, StorageIOError<u64>> {
        let Some(bytes) = self.meta.get(name).map_err(|e| StorageIOError::read(&e))? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read(&e))
    }

    /// A crash between recording a purge and removing the entries leaves entries at or
    /// below the purge point; they are never read, but would confuse the log state.
    fn drop_purged_leftovers(&self) -> Result<(), StorageError> {
        let Some(purged) = self.get_meta::<LogId>(LAST_PURGED)? else {
            return Ok(());
        };
        self.remove_range(..=purged.index)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    fn remove_range(&self, range: impl RangeBounds<u64>) -> Result<(), sled::Error> {
        let Some((lo, hi)) = crate::index_bounds(&range) else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for k in self.log.range(key(lo)..=key(hi)).keys() {
            batch.remove(k?);
        }
        self.log.apply_batch(batch)
    }

    fn last_entry(&self) -> Result<Option<LogId>, StorageIOError<u64>> {
        let Some((_, v)) = self.log.last().map_err(|e| StorageIOError::read_logs(&e))? else {
            return Ok(None);
        };
        let entry: Entry = decode(&v).map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for SledLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((lo, hi)) = crate::index_bounds(&range) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for kv in self.log.range(key(lo)..=key(hi)) {
            let (k, v) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = u64::from_be_bytes(k.as_ref().try_into().unwrap_or_default());
            let entry: Entry =
                decode(&v).map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for SledLogStore {
    type LogReader = SledLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(LAST_PURGED)?;
        let last = self.last_entry()?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.meta
            .insert(VOTE, encode(vote))
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.durable
            .flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.get_meta(VOTE)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let w = |e: &sled::Error| StorageIOError::<u64>::write(e);
        // Not flushed here: see the module comment.
        self.meta
            .insert(COMMITTED, encode(&committed))
            .map_err(|e| w(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&key(e.log_id.index), encode(&e));
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // Acknowledge only what is on disk: openraft counts this node in the quorum then.
        if let Err(e) = self.durable.flush().await {
            let err = StorageIOError::write_logs(&e);
            callback.log_io_completed(Err(e));
            return Err(err.into());
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_range(log_id.index..)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.durable
            .flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let w = |e: &(dyn std::error::Error + 'static)| {
            StorageIOError::<u64>::write_logs(AnyError::from_dyn(e, None))
        };
        let previous: Option<LogId> = self.get_meta(LAST_PURGED)?;
        if previous < Some(log_id) {
            // The marker is durable before any entry goes, so a crash in between never
            // leaves a hole below the first entry that the log state does not explain.
            self.meta
                .insert(LAST_PURGED, encode(&log_id))
                .map_err(|e| w(&e))?;
            self.durable.flush().await.map_err(|e| w(&e))?;
        }
        self.remove_range(..=log_id.index).map_err(|e| w(&e))?;
        self.durable.flush().await.map_err(|e| w(&e))?;
        Ok(())
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
