//! The consumers and credentials of one config version, indexed for the auth plugins:
//! key-auth keys, basic-auth usernames, acl groups.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, PoisonError};

use tidegate_model::entities::{BasicauthCredential, Consumer, KeyauthCredential};
use tidegate_model::{Entity, EntityKind};
use tidegate_state::ConfigState;
use uuid::Uuid;

/// A consumer as plugins need it, with its acl groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub id: Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    /// The groups of its `acls` credentials, sorted.
    pub groups: Arc<[String]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCredential {
    pub id: Uuid,
    pub consumer: Uuid,
    /// Unix seconds after which the key no longer authenticates (`created_at + ttl`).
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredential {
    pub id: Uuid,
    pub consumer: Uuid,
    /// `sha1(password .. consumer_id)` in hex, as stored.
    pub password_hash: String,
}

/// The index of one config version. Cloning is cheap: the maps are sharded behind
/// `Arc`s, so the index of the next version shares everything but what changed.
#[derive(Default, Clone)]
pub struct Consumers {
    by_id: Sharded<Uuid, Arc<ConsumerInfo>>,
    by_username: Sharded<String, Uuid>,
    keys: Sharded<String, KeyCredential>,
    basic: Sharded<String, BasicCredential>,
}

/// The config and index built last, to update instead of rebuilding: a proxy builds the
/// index for every config version, and with a million consumers a rebuild costs
/// seconds and a second copy of the index while it runs. One per proxy, kept in its
/// plugin [`crate::Runtime`].
#[derive(Default)]
pub struct LastIndex(Mutex<Option<(ConfigState, Consumers)>>);

impl LastIndex {
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The kinds the index is made of.
const KINDS: [EntityKind; 4] = [
    EntityKind::Consumer,
    EntityKind::Acl,
    EntityKind::KeyauthCredential,
    EntityKind::BasicauthCredential,
];

impl Consumers {
    /// The index of `state`. The same as [`Self::rebuild`], computed from the index
    /// built last when `state` differs from that config in a few consumers and
    /// credentials (a DP's next version) — found without reading the rest, since the
    /// two configs share their unchanged parts.
    pub fn build(state: &ConfigState, last: &LastIndex) -> Self {
        let lock = || last.0.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = lock().clone();
        let out = previous
            .and_then(|(before, index)| index.updated(&before, state))
            .unwrap_or_else(|| Self::rebuild(state));
        *lock() = Some((state.clone(), out.clone()));
        out
    }

    /// The index of `state`, from all of it.
    pub fn rebuild(state: &ConfigState) -> Self {
        let mut groups: HashMap<Uuid, Vec<String>> = HashMap::new();
        for e in state.iter_kind(EntityKind::Acl) {
            if let Entity::Acl(a) = e {
                if let Some(c) = a.consumer {
                    groups.entry(c.id).or_default().push(a.group.clone());
                }
            }
        }
        let mut out = Consumers::default();
        // Sized from the counts: a million keys grown into their maps by doubling moved
        // each entry several times, with the old and new tables of a shard held at once.
        let consumers = state.count(EntityKind::Consumer);
        out.by_id.reserve(consumers);
        out.by_username.reserve(consumers);
        out.keys.reserve(state.count(EntityKind::KeyauthCredential));
        out.basic
            .reserve(state.count(EntityKind::BasicauthCredential));
        for e in state.iter_kind(EntityKind::Consumer) {
            if let Entity::Consumer(c) = e {
                let mut g = groups.remove(&c.id).unwrap_or_default();
                g.sort();
                g.dedup();
                if let Some(u) = &c.username {
                    out.by_username.insert(u.clone(), c.id);
                }
                out.by_id.insert(c.id, Arc::new(consumer_info(c, g)));
            }
        }
        for e in state.iter_kind(EntityKind::KeyauthCredential) {
            if let Entity::KeyauthCredential(k) = e {
                if let Some((key, cred)) = key_credential(k) {
                    out.keys.insert(key, cred);
                }
            }
        }
        for e in state.iter_kind(EntityKind::BasicauthCredential) {
            if let Entity::BasicauthCredential(b) = e {
                if let Some((name, cred)) = basic_credential(b) {
                    out.basic.insert(name, cred);
                }
            }
        }
        out
    }

    /// This index (of `before`) changed into the index of `after`; `None` when that is
    /// not cheaper than a rebuild, or when a key is held twice (which a valid config
    /// does not allow; the rebuild then decides as it always did).
    fn updated(mut self, before: &ConfigState, after: &ConfigState) -> Option<Self> {
        let mut changed = Vec::new();
        let limit = 1024 + (before.len() + after.len()) / 8;
        let mut total = 0;
        for kind in KINDS {
            let ids = after.changed_ids(before, kind);
            total += ids.len();
            if total > limit {
                return None;
            }
            changed.push((kind, ids));
        }
        let mut consumers: Vec<Uuid> = Vec::new();
        for (kind, ids) in &changed {
            for id in ids {
                let (old, new) = (before.get(*kind, *id), after.get(*kind, *id));
                match (old, new) {
                    (None, None) => {}
                    (Some(Entity::Consumer(_)), _) | (_, Some(Entity::Consumer(_))) => {
                        if let Some(Entity::Consumer(c)) = old {
                            if let Some(u) = &c.username {
                                self.by_username.remove_if(u, |v| v == id)?;
                            }
                        }
                        if let Some(Entity::Consumer(c)) = new {
                            if let Some(u) = &c.username {
                                self.by_username.insert_new(u.clone(), *id)?;
                            }
                        }
                        consumers.push(*id);
                    }
                    (Some(Entity::Acl(_)), _) | (_, Some(Entity::Acl(_))) => {
                        for e in [old, new].into_iter().flatten() {
                            if let Entity::Acl(a) = e {
                                consumers.extend(a.consumer.map(|c| c.id));
                            }
                        }
                    }
                    (Some(Entity::KeyauthCredential(_)), _)
                    | (_, Some(Entity::KeyauthCredential(_))) => {
                        if let Some(Entity::KeyauthCredential(k)) = old {
                            if let Some((key, _)) = key_credential(k) {
                                self.keys.remove_if(&key, |v| v.id == *id)?;
                            }
                        }
                        if let Some(Entity::KeyauthCredential(k)) = new {
                            if let Some((key, cred)) = key_credential(k) {
                                self.keys.insert_new(key, cred)?;
                            }
                        }
                    }
                    (Some(Entity::BasicauthCredential(_)), _)
                    | (_, Some(Entity::BasicauthCredential(_))) => {
                        if let Some(Entity::BasicauthCredential(b)) = old {
                            if let Some((name, _)) = basic_credential(b) {
                                self.basic.remove_if(&name, |v| v.id == *id)?;
                            }
                        }
                        if let Some(Entity::BasicauthCredential(b)) = new {
                            if let Some((name, cred)) = basic_credential(b) {
                                self.basic.insert_new(name, cred)?;
                            }
                        }
                    }
                    _ => return None,
                }
            }
        }
        consumers.sort();
        consumers.dedup();
        for id in consumers {
            match after.get(EntityKind::Consumer, id) {
                Some(Entity::Consumer(c)) => {
                    let mut g: Vec<String> = after
                        .children_of(EntityKind::Consumer, id)
                        .filter(|(kind, _)| *kind == EntityKind::Acl)
                        .filter_map(|(kind, acl)| match after.get(kind, acl) {
                            Some(Entity::Acl(a)) => Some(a.group.clone()),
                            _ => None,
                        })
                        .collect();
                    g.sort();
                    g.dedup();
                    self.by_id.insert(id, Arc::new(consumer_info(c, g)));
                }
                _ => {
                    self.by_id.remove_if(&id, |_| true);
                }
            }
        }
        Some(self)
    }

    pub fn get(&self, id: &Uuid) -> Option<&Arc<ConsumerInfo>> {
        self.by_id.get(id)
    }

    /// Kong's `anonymous` takes a consumer id or username.
    pub fn find(&self, id_or_username: &str) -> Option<&Arc<ConsumerInfo>> {
        match id_or_username.parse::<Uuid>() {
            Ok(id) => self.by_id.get(&id),
            Err(_) => self
                .by_username
                .get(id_or_username)
                .and_then(|id| self.by_id.get(id)),
        }
    }

    pub fn key(&self, key: &str) -> Option<&KeyCredential> {
        self.keys.get(key)
    }

    pub fn basic(&self, username: &str) -> Option<&BasicCredential> {
        self.basic.get(username)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.len() == 0
    }
}

fn consumer_info(c: &Consumer, groups: Vec<String>) -> ConsumerInfo {
    // Most consumers are in no acl group: they share one empty list rather than each
    // allocating its own (an `Arc` of nothing still allocates its counts).
    static NO_GROUPS: std::sync::OnceLock<Arc<[String]>> = std::sync::OnceLock::new();
    let groups = if groups.is_empty() {
        NO_GROUPS.get_or_init(|| Arc::from(Vec::new())).clone()
    } else {
        groups.into()
    };
    ConsumerInfo {
        id: c.id,
        username: c.username.clone(),
        custom_id: c.custom_id.clone(),
        groups,
    }
}

fn key_credential(k: &KeyauthCredential) -> Option<(String, KeyCredential)> {
    let c = k.consumer?;
    let expires_at = k.ttl.filter(|t| *t > 0).map(|t| k.created_at + t);
    Some((
        k.key.clone(),
        KeyCredential {
            id: k.id,
            consumer: c.id,
            expires_at,
        },
    ))
}

fn basic_credential(b: &BasicauthCredential) -> Option<(String, BasicCredential)> {
    let c = b.consumer?;
    Some((
        b.username.clone(),
        BasicCredential {
            id: b.id,
            consumer: c.id,
            password_hash: b.password.clone(),
        },
    ))
}

/// Shards of a map that is only looked up: 1,024 `Arc`ed hash maps, made on first insert.
const SHARDS: usize = 1024;

struct Sharded<K, V> {
    shards: Vec<Arc<HashMap<K, V, Seeded>>>,
    len: usize,
}

/// The maps' hasher: foldhash, seeded per process so that keys chosen to collide in one
/// process do not collide in another. A million keys go through it at every rebuild,
/// where SipHash cost several percent of the whole build.
type Seeded = foldhash::fast::RandomState;

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            shards: Vec::new(),
            len: 0,
        }
    }
}

impl<K, V> Clone for Sharded<K, V> {
    fn clone(&self) -> Self {
        Sharded {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

/// A fixed seed, so that a key's shard does not depend on the process.
fn shard_of<Q: Hash + ?Sized>(k: &Q) -> usize {
    let h = foldhash::fast::FixedState::with_seed(0x243f_6a88_85a3_08d3).hash_one(k);
    (h % SHARDS as u64) as usize
}

impl<K: Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.shards.get(shard_of(k))?.get(k)
    }

    fn insert(&mut self, k: K, v: V) -> Option<V> {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| Arc::default()).collect();
        }
        let old = Arc::make_mut(&mut self.shards[shard_of(&k)]).insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Room for `n` keys in all, spread evenly (the shard of a key is a hash). The mean
    /// per shard, no more: a margin could double a table that would have fit.
    fn reserve(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| Arc::default()).collect();
        }
        let per_shard = n.div_ceil(SHARDS);
        for shard in &mut self.shards {
            Arc::make_mut(shard).reserve(per_shard);
        }
    }

    /// Inserts `k`, which must be absent: `None` (and nothing changed) when it is not.
    fn insert_new(&mut self, k: K, v: V) -> Option<()> {
        if self.get(&k).is_some() {
            return None;
        }
        self.insert(k, v);
        Some(())
    }

    /// Removes `k` if its value passes `owned`. `None` when `k` is held by another
    /// value; `Some` when it was removed or absent.
    fn remove_if(&mut self, k: &K, owned: impl FnOnce(&V) -> bool) -> Option<()> {
        match self.get(k) {
            None => Some(()),
            Some(v) if owned(v) => {
                Arc::make_mut(&mut self.shards[shard_of(k)]).remove(k);
                self.len -= 1;
                Some(())
            }
            Some(_) => None,
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests;
