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

    /// The value at `k`, inserted as `V::default()` when absent.
    pub(crate) fn get_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        let shard = Arc::make_mut(self.shards.entry(k.shard()).or_default());
        if !shard.contains_key(&k) {
            self.len += 1;
        }
        shard.entry(k).or_default()
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

/// FNV-1a over `bytes`, folded into `bits` bits: a shard for keys that are only looked
/// up, never iterated in order. Deterministic (no per-process seed).
pub(crate) fn hashed(parts: &[&[u8]], bits: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
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
        *a.get_or_default(500) += 5;
        *a.get_mut(&9).unwrap() += 1;
        assert_eq!(b.get(&7), Some(&7));
        assert_eq!(b.get(&8), Some(&8));
        assert_eq!(b.get(&500), None);
        assert_eq!(a.get(&7), Some(&70));
        assert_eq!(a.get(&9), Some(&10));
        assert_eq!(a.get(&500), Some(&5));
        assert_eq!(a.len(), 200);
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
        assert_eq!(a.len(), 185);
        assert!(a.get(&3).is_none());
    }

    #[test]
    fn hashed_shards_stay_in_range() {
        for i in 0..1000u32 {
            assert!(hashed(&[&i.to_le_bytes(), b"x"], 12) < 4096);
        }
    }
}
