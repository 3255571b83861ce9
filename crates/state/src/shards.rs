//! An ordered map split into shards behind `Arc`s: cloning it costs one reference count
//! per shard, and changing an entry copies only that entry's shard. A DP applies each
//! change to a copy of the config it serves (DESIGN.md §5), so with a million entities a
//! plain `BTreeMap` made every change cost a copy of the whole config.
//!
//! The shard of a key comes from [`ShardKey::shard`]; when it is monotone in the key's
//! order, iterating the shards in order iterates the keys in order.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Which shard a key lives in.
pub(crate) trait ShardKey {
    fn shard(&self) -> u32;
}

#[derive(Debug, Clone)]
pub(crate) struct ShardMap<K, V> {
    /// Only non-empty shards.
    shards: BTreeMap<u32, Arc<BTreeMap<K, V>>>,
    len: usize,
}

impl<K, V> Default for ShardMap<K, V> {
    fn default() -> Self {
        ShardMap {
            shards: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone + ShardKey, V: Clone> ShardMap<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.shards.get(&k.shard())?.get(k)
    }

    pub(crate) fn contains_key(&self, k: &K) -> bool {
        self.get(k).is_some()
    }

    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        let shard = Arc::make_mut(self.shards.entry(k.shard()).or_default());
        let old = shard.insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let id = k.shard();
        let slot = self.shards.get_mut(&id)?;
        if !slot.contains_key(k) {
            // Not here: do not copy a shared shard for nothing.
            return None;
        }
        let shard = Arc::make_mut(slot);
        let old = shard.remove(k);
        if shard.is_empty() {
            self.shards.remove(&id);
        }
        self.len -= 1;
        old
    }

    /// The value at `k`, for changing it in place; `None` when absent (nothing copied).
    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let slot = self.shards.get_mut(&k.shard())?;
        if !slot.contains_key(k) {
            return None;
        }
        Arc::make_mut(slot).get_mut(k)
    }

    /// Changes the value at `k` with `change`, or inserts `new()` when there is none, in
    /// one search.
    pub(crate) fn upsert(&mut self, k: K, new: impl FnOnce() -> V, change: impl FnOnce(&mut V)) {
        use std::collections::btree_map::Entry;
        let shard = Arc::make_mut(self.shards.entry(k.shard()).or_default());
        match shard.entry(k) {
            Entry::Occupied(mut o) => change(o.get_mut()),
            Entry::Vacant(v) => {
                v.insert(new());
                self.len += 1;
            }
        }
    }

    /// Adds `entries`, all of shard `shard`, sorted by key and without duplicates. An
    /// absent shard is built at once (full nodes, no search per entry).
    pub(crate) fn extend_shard(&mut self, shard: u32, entries: Vec<(K, V)>) {
        debug_assert!(entries.iter().all(|(k, _)| k.shard() == shard));
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        if entries.is_empty() {
            return;
        }
        if self.shards.contains_key(&shard) {
            for (k, v) in entries {
                self.insert(k, v);
            }
            return;
        }
        self.len += entries.len();
        self.shards
            .insert(shard, Arc::new(entries.into_iter().collect()));
    }

    /// Every value, for changing them in place (copying the shards that are shared).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.shards
            .values_mut()
            .flat_map(|s| Arc::make_mut(s).values_mut())
    }

    /// Entries in key order (when the shard function is monotone).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.values().flat_map(|s| s.iter())
    }

    /// Entries of the shards `lo..=hi`, in order.
    pub(crate) fn shard_range(&self, lo: u32, hi: u32) -> impl Iterator<Item = (&K, &V)> {
        self.shards.range(lo..=hi).flat_map(|(_, s)| s.iter())
    }

    /// The shards `lo..=hi` (for comparing two maps that share structure).
    pub(crate) fn shards_in(
        &self,
        lo: u32,
        hi: u32,
    ) -> impl Iterator<Item = (&u32, &Arc<BTreeMap<K, V>>)> {
        self.shards.range(lo..=hi)
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for ShardMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .shards
                .values()
                .flat_map(|s| s.iter())
                .eq(other.shards.values().flat_map(|s| s.iter()))
    }
}

/// FNV-1a over `parts` (each followed by a separator): a shard for keys that are only
/// looked up, never iterated in order. Deterministic (no per-process seed).
pub(crate) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `h` folded into `bits` bits.
pub(crate) fn folded(h: u64, bits: u32) -> u32 {
    ((h >> 32) ^ h) as u32 & ((1 << bits) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ShardKey for u32 {
        fn shard(&self) -> u32 {
            self >> 4
        }
    }

    #[test]
    fn clones_share_until_changed_and_iterate_in_order() {
        let mut a: ShardMap<u32, u32> = ShardMap::default();
        for k in (0..200).rev() {
            assert_eq!(a.insert(k, k), None);
        }
        assert_eq!(a.len(), 200);
        let b = a.clone();
        assert_eq!(a.insert(7, 70), Some(7));
        assert_eq!(a.remove(&8), Some(8));
        assert_eq!(a.remove(&8), None);
        assert_eq!(a.insert(500, 5), None);
        a.upsert(500, || 0, |v| *v += 1);
        a.upsert(501, || 1, |v| *v += 1);
        *a.get_mut(&9).unwrap() += 1;
        assert_eq!(b.get(&7), Some(&7));
        assert_eq!(b.get(&8), Some(&8));
        assert_eq!(b.get(&500), None);
        assert_eq!(a.get(&7), Some(&70));
        assert_eq!(a.get(&9), Some(&10));
        assert_eq!(a.get(&500), Some(&6));
        assert_eq!(a.get(&501), Some(&1));
        assert_eq!(a.len(), 201);
        let keys: Vec<u32> = a.iter().map(|(k, _)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let same: Vec<_> = a
            .shards_in(0, u32::MAX)
            .zip(b.shards_in(0, u32::MAX))
            .filter(|((_, x), (_, y))| Arc::ptr_eq(x, y))
            .collect();
        // Shards 0 (7, 8, 9 changed) and 31 (500 added) are copies; the rest are shared.
        assert_eq!(same.len(), 12);
        assert_ne!(a, b);
        for k in 0..16 {
            a.remove(&k);
        }
        assert_eq!(a.len(), 186);
        assert!(a.get(&3).is_none());
    }

    #[test]
    fn shards_built_from_sorted_entries_hold_what_inserts_would() {
        let mut a: ShardMap<u32, u32> = ShardMap::default();
        let mut b: ShardMap<u32, u32> = ShardMap::default();
        for k in 0..100 {
            a.insert(k, k);
        }
        for shard in 0..7 {
            let keys = shard * 16..(shard * 16 + 16).min(100);
            b.extend_shard(shard, keys.map(|k| (k, k)).collect());
        }
        b.extend_shard(9, Vec::new());
        assert_eq!(a, b);
        assert_eq!(b.len(), 100);
        assert_eq!(b.shards_in(0, u32::MAX).count(), 7);
        // Into a shard that exists, the entries are merged in.
        a.remove(&3);
        a.extend_shard(0, vec![(3, 30)]);
        assert_eq!(a.get(&3), Some(&30));
        assert_eq!(a.len(), 100);
    }

    #[test]
    fn hashed_shards_stay_in_range() {
        for i in 0..1000u32 {
            assert!(folded(fnv(&[&i.to_le_bytes(), b"x"]), 12) < 4096);
        }
    }
}
