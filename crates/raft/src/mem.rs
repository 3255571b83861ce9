//! An in-memory log store and state machine, for the deterministic simulator.
//!
//! Everything durable lives in a [`MemStorage`] handle: a simulated node "crashes" by
//! dropping its Raft and restarts with [`MemStorage::open`] on the same handle, exactly as
//! a sled node reopens its directory. A write counts as durable once `append` has called
//! the `LogFlushed` callback, which here is immediately.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::sm::{SnapshotStore, StateMachine, StoredSnapshot, DEFAULT_EVENT_TAIL};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

#[derive(Default)]
struct MemData {
    log: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    snapshot: Option<StoredSnapshot>,
}

/// A node's "disk": survives dropping the Raft, the log store and the state machine.
#[derive(Clone, Default)]
pub struct MemStorage {
    data: Arc<Mutex<MemData>>,
}

pub type MemStateMachine = StateMachine<MemStorage>;

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
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

    fn lock(&self) -> MutexGuard<'_, MemData> {
        // Critical sections here run no foreign code, so poison carries no torn state.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Debug for MemStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.lock();
        f.debug_struct("MemStorage")
            .field("entries", &d.log.len())
            .field("vote", &d.vote)
            .field("committed", &d.committed)
            .field("last_purged", &d.last_purged)
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
            .log
            .range(lo..=hi)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = MemLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let d = self.storage.lock();
        let last = d.log.last_key_value().map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: d.last_purged,
            last_log_id: last.or(d.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.storage.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.storage.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.storage.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.storage.lock().committed)
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
        {
            let mut d = self.storage.lock();
            for e in entries {
                d.log.insert(e.log_id.index, e);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut d = self.storage.lock();
        let _removed = d.log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut d = self.storage.lock();
        if d.last_purged < Some(log_id) {
            d.last_purged = Some(log_id);
        }
        d.log = match log_id.index.checked_add(1) {
            Some(next) => d.log.split_off(&next),
            None => BTreeMap::new(),
        };
        Ok(())
    }
}
