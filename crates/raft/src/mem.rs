//! An in-memory log store and state machine, for tests and the deterministic simulator.
//!
//! Everything durable lives in a [`MemStorage`] handle: a simulated node "crashes" by
//! dropping its Raft and restarts with [`MemStorage::open`] on the same handle, exactly as
//! a sled node reopens its directory.
//!
//! Two disks:
//!
//! - [`MemStorage::new`]: every write is durable at once (`append` calls the
//!   `LogFlushed` callback immediately). For openraft's suite and cluster tests.
//! - [`MemStorage::with_fsync`]: a write becomes durable `fsync` of tokio time after it
//!   is made visible, and [`MemStorage::crash`] drops whatever was not durable yet, as a
//!   power loss does. A crash can land between a write and its durability, so a store
//!   that acknowledged too early loses acknowledged entries; the simulator runs this one.
//!
//! In both, the state machine's snapshots are durable when saved (the sled store's are
//! a write and a flush before the call returns), and the committed index is kept at once:
//! openraft treats it as a hint that it can re-derive.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::sm::{SnapshotStore, StateMachine, StoredSnapshot, DEFAULT_EVENT_TAIL};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The log and the vote, as one view of the disk sees them.
#[derive(Clone, Default)]
struct Log {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

impl Log {
    fn append(&mut self, entries: &[Entry]) {
        for e in entries {
            self.entries.insert(e.log_id.index, e.clone());
        }
    }

    fn truncate(&mut self, index: u64) {
        let _removed = self.entries.split_off(&index);
    }

    fn purge(&mut self, log_id: LogId) {
        if self.last_purged < Some(log_id) {
            self.last_purged = Some(log_id);
        }
        self.entries = match log_id.index.checked_add(1) {
            Some(next) => self.entries.split_off(&next),
            None => BTreeMap::new(),
        };
    }
}

#[derive(Default)]
struct MemData {
    /// What reads see: written, maybe not durable yet.
    visible: Log,
    /// What survives [`MemStorage::crash`].
    durable: Log,
    snapshot: Option<StoredSnapshot>,
}

/// A node's "disk": survives dropping the Raft, the log store and the state machine.
#[derive(Clone, Default)]
pub struct MemStorage {
    data: Arc<Mutex<MemData>>,
    /// None: durable at once. Some: durable after this much time, lost by a crash before.
    fsync: Option<Duration>,
}

pub type MemStateMachine = StateMachine<MemStorage>;

impl MemStorage {
    /// A disk on which every write is durable at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk on which a log or vote write becomes durable after `fsync` of tokio time,
    /// and which loses what is not durable yet when [`Self::crash`] is called.
    pub fn with_fsync(fsync: Duration) -> Self {
        MemStorage {
            data: Arc::default(),
            fsync: Some(fsync),
        }
    }

    /// Power loss: every log and vote write not yet durable is gone. Call it when the
    /// node's tasks are dropped (a write in progress then never becomes durable).
    pub fn crash(&self) {
        let mut d = self.lock();
        d.visible = d.durable.clone();
    }

    /// A log store and a state machine on this storage, as after a restart.
    pub fn open(&self) -> Result<(MemLogStore, MemStateMachine), StorageError> {
        self.open_with_event_tail(DEFAULT_EVENT_TAIL)
    }

    pub fn open_with_event_tail(
        &self,
        event_tail: usize,
    ) -> Result<(MemLogStore, MemStateMachine), StorageError> {
        let sm = StateMachine::open(self.clone(), event_tail)?;
        Ok((
            MemLogStore {
                storage: self.clone(),
            },
            sm,
        ))
    }

    /// The log entries the running node sees, in index order.
    pub fn log_entries(&self) -> Vec<Entry> {
        self.lock().visible.entries.values().cloned().collect()
    }

    /// The last log id purged behind a snapshot, if any.
    pub fn last_purged(&self) -> Option<LogId> {
        self.lock().visible.last_purged
    }

    fn lock(&self) -> MutexGuard<'_, MemData> {
        // Critical sections here run no foreign code, so poison carries no torn state.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `write` visible now and durable after the fsync delay. A crash before the
    /// delay ends drops this future, and with it the durable half of the write.
    async fn write(&self, write: impl Fn(&mut Log)) {
        write(&mut self.lock().visible);
        if let Some(fsync) = self.fsync {
            tokio::time::sleep(fsync).await;
        }
        write(&mut self.lock().durable);
    }
}

impl Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.lock();
        f.debug_struct("MemStorage")
            .field("entries", &d.visible.entries.len())
            .field("durable_entries", &d.durable.entries.len())
            .field("vote", &d.visible.vote)
            .field("committed", &d.visible.committed)
            .field("last_purged", &d.visible.last_purged)
            .field("fsync", &self.fsync)
            .finish()
    }
}

impl SnapshotStore for MemStorage {
    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        Ok(self.lock().snapshot.clone())
    }

    async fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        self.lock().snapshot = Some(snapshot.clone());
        Ok(())
    }
}

/// The log store; also its own log reader (clones share the storage).
#[derive(Clone, Debug)]
pub struct MemLogStore {
    storage: MemStorage,
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((lo, hi)) = crate::index_bounds(&range) else {
            return Ok(Vec::new());
        };
        Ok(self
            .storage
            .lock()
            .visible
            .entries
            .range(lo..=hi)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = MemLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let d = self.storage.lock();
        let last = d.visible.entries.last_key_value().map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: d.visible.last_purged,
            last_log_id: last.or(d.visible.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.storage.write(|l| l.vote = Some(vote)).await;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.storage.lock().visible.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut d = self.storage.lock();
        d.visible.committed = committed;
        d.durable.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.storage.lock().visible.committed)
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let (Some(fsync), true) = (self.storage.fsync, crate::planted::early_ack()) {
            // Planted bug: acknowledged as soon as visible, durable only much later.
            self.storage.lock().visible.append(&entries);
            callback.log_io_completed(Ok(()));
            let storage = self.storage.clone();
            tokio::spawn(async move {
                tokio::time::sleep(fsync * 40).await;
                storage.lock().durable.append(&entries);
            });
            return Ok(());
        }
        self.storage.write(|l| l.append(&entries)).await;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.storage.write(|l| l.truncate(log_id.index)).await;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.storage.write(|l| l.purge(log_id)).await;
        Ok(())
    }
}
