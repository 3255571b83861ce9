//! Where the sync client persists each config before serving it: the disk cache in
//! production, an in-memory "disk" in the simulator.
//!
//! The contract is the one [`crate::cache::Cache::store`] keeps: when the future resolves
//! `Ok`, the config survives a crash of the process; until then, a crash leaves the
//! previous one. The sync client publishes a config only after its store resolved (or
//! failed, see `sync`), so a DP never restarts on an older config than it served.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tidegate_state::ConfigState;

use crate::cache::{Cache, Point};

/// The future of one store: durable when it resolves `Ok`.
pub type StoreFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// How the config to store was reached from the one stored before it.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// Not from a known stored config: a snapshot, or a retry after a failed store.
    Whole,
    /// By these Events, encoded as the CP sent them, in order, from the config at `from`.
    Events { from: Point, events: Vec<Vec<u8>> },
}

/// A durable slot for the config the DP serves.
pub trait ConfigStore: Send + Sync + 'static {
    fn store(&self, state: Arc<ConfigState>, delta: Delta) -> StoreFuture;
}

/// The crash-safe disk cache; each store runs on the blocking pool (it syncs).
pub struct DiskStore {
    cache: Arc<Mutex<Cache>>,
}

impl DiskStore {
    pub fn new(cache: Cache) -> Self {
        DiskStore {
            cache: Arc::new(Mutex::new(cache)),
        }
    }
}

impl ConfigStore for DiskStore {
    fn store(&self, state: Arc<ConfigState>, delta: Delta) -> StoreFuture {
        let cache = self.cache.clone();
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || {
                let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
                match delta {
                    Delta::Whole => cache.store(&state),
                    Delta::Events { from, events } => cache.append(&state, from, &events),
                }
            });
            match task.await {
                Ok(stored) => stored.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the cache store did not finish: {e}")),
            }
        })
    }
}
