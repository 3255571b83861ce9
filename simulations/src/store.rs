//! Simulated disks. A CP's Raft log and vote, and a DP's config cache, live in handles
//! that outlive a host's crash; what was written but not yet "fsynced" is lost when the
//! simulator crashes the host ([`CpDisk::crash`]; a DP's store in progress is dropped
//! with the host's tasks, leaving the previous config, as temp file + rename would).
//!
//! An fsync takes simulated time (`fsync`, drawn per node from the seed), so crashes can
//! land between a write and its durability. The correct log store acknowledges an append
//! (openraft's `LogFlushed` callback) only once it is durable; the planted bug
//! [`Planted::early_ack`](crate::Planted) acknowledges first and makes it durable later.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use tidegate_dp::{ConfigStore, StoreFuture};
use tidegate_raft::{
    Entry, LogId, SnapshotStore, StateMachine, StorageError, StoredSnapshot, TypeConfig, Vote,
};
use tidegate_state::ConfigState;

#[derive(Clone, Default)]
struct Log {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

impl Log {
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
struct CpData {
    /// What reads see: written, maybe not durable.
    visible: Log,
    /// What survives a crash.
    durable: Log,
    /// Snapshots are written durably at once (a rename after fsync, in the real store).
    snapshot: Option<StoredSnapshot>,
}

/// A CP's disk: survives the host's crash, minus what was not durable.
#[derive(Clone)]
pub struct CpDisk {
    data: Arc<Mutex<CpData>>,
    fsync: Duration,
    early_ack: bool,
}

impl CpDisk {
    pub fn new(fsync: Duration, early_ack: bool) -> Self {
        CpDisk {
            data: Arc::default(),
            fsync,
            early_ack,
        }
    }

    fn lock(&self) -> MutexGuard<'_, CpData> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Power loss: everything not yet durable is gone.
    pub fn crash(&self) {
        let mut d = self.lock();
        d.visible = d.durable.clone();
    }

    /// The log store and the state machine, as after a (re)start.
    #[allow(clippy::result_large_err)] // openraft's error type, as its traits return it
    pub fn open(&self) -> Result<(SimLogStore, StateMachine<CpDisk>), StorageError> {
        let sm = StateMachine::open(self.clone(), tidegate_raft::DEFAULT_EVENT_TAIL)?;
        Ok((SimLogStore { disk: self.clone() }, sm))
    }

    /// The log entries as the running node sees them (for the checkers).
    pub fn visible_entries(&self) -> Vec<Entry> {
        self.lock().visible.entries.values().cloned().collect()
    }

    pub fn last_purged(&self) -> Option<LogId> {
        self.lock().visible.last_purged
    }

    async fn sync(&self, f: impl Fn(&mut Log)) {
        tokio::time::sleep(self.fsync).await;
        f(&mut self.lock().durable);
    }
}

impl SnapshotStore for CpDisk {
    fn load(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        Ok(self.lock().snapshot.clone())
    }

    async fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        self.lock().snapshot = Some(snapshot.clone());
        Ok(())
    }
}

/// openraft's log store on a [`CpDisk`].
#[derive(Clone)]
pub struct SimLogStore {
    disk: CpDisk,
}

impl Debug for SimLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLogStore").finish()
    }
}

impl RaftLogReader<TypeConfig> for SimLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let d = self.disk.lock();
        Ok(d.visible
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for SimLogStore {
    type LogReader = SimLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let d = self.disk.lock();
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
        self.disk.lock().visible.vote = Some(vote);
        self.disk.sync(|l| l.vote = Some(vote)).await;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.disk.lock().visible.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut d = self.disk.lock();
        d.visible.committed = committed;
        d.durable.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.disk.lock().visible.committed)
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
        {
            let mut d = self.disk.lock();
            for e in &entries {
                d.visible.entries.insert(e.log_id.index, e.clone());
            }
        }
        let write = move |l: &mut Log| {
            for e in &entries {
                l.entries.insert(e.log_id.index, e.clone());
            }
        };
        if self.disk.early_ack {
            // Planted bug: acknowledged now, durable whenever the write-back happens.
            callback.log_io_completed(Ok(()));
            let disk = self.disk.clone();
            tokio::spawn(async move {
                tokio::time::sleep(disk.fsync * 40).await;
                write(&mut disk.lock().durable);
            });
            return Ok(());
        }
        self.disk.sync(write).await;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.disk.lock().visible.truncate(log_id.index);
        self.disk.sync(|l| l.truncate(log_id.index)).await;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.disk.lock().visible.purge(log_id);
        self.disk.sync(|l| l.purge(log_id)).await;
        Ok(())
    }
}

/// A DP's config cache: a store is durable after `fsync` of simulated time.
#[derive(Clone)]
pub struct DpDisk {
    durable: Arc<Mutex<Option<Arc<ConfigState>>>>,
    fsync: Duration,
}

impl DpDisk {
    pub fn new(fsync: Duration) -> Self {
        DpDisk {
            durable: Arc::default(),
            fsync,
        }
    }

    /// What a (re)started DP loads.
    pub fn load(&self) -> Option<Arc<ConfigState>> {
        self.durable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ConfigStore for DpDisk {
    fn store(&self, state: Arc<ConfigState>) -> StoreFuture {
        let durable = self.durable.clone();
        let fsync = self.fsync;
        Box::pin(async move {
            // Dropped by a crash while sleeping: the old cache stays, as on a real disk
            // (temp file, fsync, rename).
            tokio::time::sleep(fsync).await;
            *durable.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
            Ok(())
        })
    }
}
