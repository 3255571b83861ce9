//! The `local` policy's counters: one per (instance, identifier, window), in memory,
//! shared by every config version (an instance keeps its id across versions, so a
//! config change does not reset anyone's count).
//!
//! Requests of different identifiers rarely meet on a lock: the counters are spread over
//! [`SHARDS`] maps, each behind its own mutex held for one hash lookup. Memory is bounded:
//! a shard drops the counters of windows that ended when it next inserts, and past
//! [`MAX_COUNTERS`] it evicts live ones (that client's count restarts, as when Kong's
//! shared dict runs out of room).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::window::Period;

pub const SHARDS: usize = 64;
/// Counters kept at most, over all shards.
pub const MAX_COUNTERS: usize = 1 << 18;

/// Who is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ident {
    Uuid(Uuid),
    Ip(IpAddr),
    Text(Arc<str>),
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ident::Uuid(u) => u.fmt(f),
            Ident::Ip(ip) => ip.fmt(f),
            Ident::Text(t) => f.write_str(t),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub plugin: Uuid,
    pub ident: Ident,
    pub period: Period,
    /// The window's start, Unix seconds.
    pub start: i64,
}

/// foldhash, seeded per process: identifiers come from clients (an IP, a header value),
/// so the seed keeps them from choosing collisions; SipHash cost a tenth of the plugin.
type Seeded = foldhash::fast::RandomState;

pub struct LocalCounters {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: Seeded,
}

struct Shard {
    map: HashMap<Key, Count, Seeded>,
    /// The earliest `expires_at` in `map`: before then a sweep would find nothing.
    earliest: i64,
}

struct Count {
    n: u64,
    expires_at: i64,
}

impl Default for LocalCounters {
    fn default() -> Self {
        LocalCounters::with_capacity(MAX_COUNTERS)
    }
}

impl LocalCounters {
    pub fn with_capacity(max: usize) -> Self {
        LocalCounters {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        earliest: i64::MAX,
                    })
                })
                .collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
            hasher: Seeded::default(),
        }
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A panic while holding a shard cannot leave a count half-written.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The count of `key` at `now` (Unix seconds).
    pub fn get(&self, key: &Key, now: i64) -> u64 {
        self.shard(key).count(key, now)
    }

    /// Adds one to `key`, whose window ends at `expires_at`; returns the new count.
    pub fn incr(&self, key: &Key, expires_at: i64, now: i64) -> u64 {
        self.shard(key).incr(key, expires_at, now, self.per_shard)
    }

    /// [`Self::get`], then [`Self::incr`] if `allow` says so given the count, under one
    /// lock: for a single window, what the two calls do, at half the cost.
    pub fn get_then_incr<T>(
        &self,
        key: &Key,
        expires_at: i64,
        now: i64,
        allow: impl FnOnce(u64) -> (bool, T),
    ) -> T {
        let mut shard = self.shard(key);
        let (counted, out) = allow(shard.count(key, now));
        if counted {
            shard.incr(key, expires_at, now, self.per_shard);
        }
        out
    }

    /// Counters held, live or not yet swept.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shard {
    fn count(&self, key: &Key, now: i64) -> u64 {
        self.map
            .get(key)
            .filter(|c| c.expires_at > now)
            .map_or(0, |c| c.n)
    }

    fn incr(&mut self, key: &Key, expires_at: i64, now: i64, per_shard: usize) -> u64 {
        if let Some(c) = self.map.get_mut(key) {
            if c.expires_at > now {
                c.n += 1;
                return c.n;
            }
            c.n = 1;
            c.expires_at = expires_at;
            self.earliest = self.earliest.min(expires_at);
            return 1;
        }
        if now >= self.earliest {
            self.map.retain(|_, c| c.expires_at > now);
            self.earliest = self
                .map
                .values()
                .map(|c| c.expires_at)
                .min()
                .unwrap_or(i64::MAX);
        }
        if self.map.len() >= per_shard {
            // Every counter here is live: one of them goes (which one does not matter
            // for a bound, and finding the oldest would cost a scan per insert).
            if let Some(victim) = self.map.keys().next().cloned() {
                self.map.remove(&victim);
            }
        }
        self.map.insert(key.clone(), Count { n: 1, expires_at });
        self.earliest = self.earliest.min(expires_at);
        1
    }
}
