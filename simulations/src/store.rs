//! A DP's simulated disk: its config cache survives the host's crash, and a store in
//! progress when the host crashes is dropped with the host's tasks, leaving the previous
//! config, as temp file + rename would. A store takes `fsync` of simulated time (drawn
//! per node from the seed), so crashes land between a publish and its durability.
//!
//! A CP's disk is `tidegate_raft::MemStorage::with_fsync`: the Raft log and vote become
//! durable after an fsync delay, and `MemStorage::crash` drops what was not durable yet.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tidegate_dp::{ConfigStore, Delta, StoreFuture};
use tidegate_state::ConfigState;

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
    /// Whole or as a journal append, the outcome is the same: `state` is durable after
    /// `fsync`, or the old one stays.
    fn store(&self, state: Arc<ConfigState>, _delta: Delta) -> StoreFuture {
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
