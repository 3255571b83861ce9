//! `ConfigState`: the materialised config, its version and hash, and the indexes that
//! validation needs (unique keys, children by parent).

use std::collections::BTreeSet;

use tidegate_model::hash::EntityDigest;
use tidegate_model::{ConfigHash, Entity, EntityKind, Lookup};
use uuid::Uuid;

use crate::event::{Change, Event};
use crate::shards::{hashed, ShardKey, ShardMap};
use crate::Snapshot;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("event version {got} does not follow config version {have}: expected {}", have + 1)]
    VersionGap { have: u64, got: u64 },
    #[error("snapshot hash {claimed} does not match its content ({actual})")]
    HashMismatch {
        claimed: ConfigHash,
        actual: ConfigHash,
    },
    #[error("snapshot holds {kind} {id} twice")]
    Duplicate { kind: EntityKind, id: Uuid },
}

/// A stored entity with its digest, so that replacing it never re-encodes the old value.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    entity: Entity,
    digest: EntityDigest,
}

/// A unique index slot: (kind, index name, key).
type UniqueKey = (EntityKind, &'static str, String);

/// Bits of an id that pick its shard within its kind: 4,096 shards per kind, so a change
/// among a million entities of one kind copies about 250 of them.
const ID_SHARD_BITS: u32 = 12;

/// Shards in (kind, id) order, so that iterating them iterates entities in load order.
impl ShardKey for (EntityKind, Uuid) {
    fn shard(&self) -> u32 {
        let b = self.1.as_bytes();
        let prefix = (u32::from(b[0]) << 8 | u32::from(b[1])) >> (16 - ID_SHARD_BITS);
        (self.0 as u32) << ID_SHARD_BITS | prefix
    }
}

impl ShardKey for UniqueKey {
    fn shard(&self) -> u32 {
        hashed(
            &[&[self.0 as u8], self.1.as_bytes(), self.2.as_bytes()],
            ID_SHARD_BITS,
        )
    }
}

/// The shards holding entities of `kind`.
fn kind_shards(kind: EntityKind) -> (u32, u32) {
    let lo = (kind as u32) << ID_SHARD_BITS;
    (lo, lo | ((1 << ID_SHARD_BITS) - 1))
}

/// The materialised config. One owner mutates it, through [`ConfigState::apply`].
///
/// Cloning is cheap (the maps are sharded behind `Arc`s) and a clone changed by one Event
/// shares all but the touched shards with the original: a DP applies changes to a copy
/// of what it serves.
#[derive(Debug, Clone, Default)]
pub struct ConfigState {
    version: u64,
    hash: ConfigHash,
    entities: ShardMap<(EntityKind, Uuid), Stored>,
    unique: ShardMap<UniqueKey, Uuid>,
    /// (parent kind, parent id) → children that reference it, for cascades and restricts.
    children: ShardMap<(EntityKind, Uuid), BTreeSet<(EntityKind, Uuid)>>,
}

// === impl ConfigState ===

impl ConfigState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn hash(&self) -> ConfigHash {
        self.hash
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.len() == 0
    }

    pub fn get(&self, kind: EntityKind, id: Uuid) -> Option<&Entity> {
        self.entities.get(&(kind, id)).map(|s| &s.entity)
    }

    /// The entity of `kind` whose unique key `index` equals `key`.
    pub fn get_by_unique(
        &self,
        kind: EntityKind,
        index: &'static str,
        key: &str,
    ) -> Option<&Entity> {
        let id = self.unique.get(&(kind, index, key.to_string()))?;
        self.get(kind, *id)
    }

    /// Entities of one kind, ordered by id.
    pub fn iter_kind(&self, kind: EntityKind) -> impl Iterator<Item = &Entity> {
        let (lo, hi) = kind_shards(kind);
        self.entities.shard_range(lo, hi).map(|(_, s)| &s.entity)
    }

    /// The ids of `kind` whose entity differs between `self` and `other` (added, removed
    /// or changed), in id order. Shards the two states share are skipped without being
    /// read, so for a state and a copy of it changed by a few Events this costs about
    /// the number of shards, not the number of entities.
    pub fn changed_ids(&self, other: &ConfigState, kind: EntityKind) -> Vec<Uuid> {
        let (lo, hi) = kind_shards(kind);
        let mut out = Vec::new();
        let mut mine = self.entities.shards_in(lo, hi).peekable();
        let mut theirs = other.entities.shards_in(lo, hi).peekable();
        loop {
            let (a, b) = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some((i, _)), Some((j, _))) if i == j => {
                    let (a, b) = (mine.next(), theirs.next());
                    (a.map(|x| x.1), b.map(|x| x.1))
                }
                (Some((i, _)), Some((j, _))) if i < j => (mine.next().map(|x| x.1), None),
                (Some(_), None) => (mine.next().map(|x| x.1), None),
                _ => (None, theirs.next().map(|x| x.1)),
            };
            match (a, b) {
                (Some(a), Some(b)) if std::sync::Arc::ptr_eq(a, b) => {}
                (Some(a), Some(b)) => {
                    let mut ids: Vec<Uuid> = a
                        .iter()
                        .filter(|(k, s)| b.get(k).map(|o| o.digest) != Some(s.digest))
                        .map(|(k, _)| k.1)
                        .collect();
                    ids.extend(b.keys().filter(|k| !a.contains_key(k)).map(|k| k.1));
                    ids.sort();
                    out.extend(ids);
                }
                (Some(only), None) | (None, Some(only)) => out.extend(only.keys().map(|k| k.1)),
                (None, None) => {}
            }
        }
        out
    }

    /// All entities in load order (parents' kinds first), then by id.
    pub fn iter(&self) -> impl Iterator<Item = &Entity> {
        self.entities.iter().map(|(_, s)| &s.entity)
    }

    /// Entities that reference (kind, id) through a foreign key.
    pub fn children_of(
        &self,
        kind: EntityKind,
        id: Uuid,
    ) -> impl Iterator<Item = (EntityKind, Uuid)> + '_ {
        self.children
            .get(&(kind, id))
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }

    /// Entities of `kind`: a sum over its shards' sizes (up to 4,096 of them), not a walk
    /// over the entities.
    pub fn count(&self, kind: EntityKind) -> usize {
        let (lo, hi) = kind_shards(kind);
        self.entities.shards_in(lo, hi).map(|(_, s)| s.len()).sum()
    }

    /// Applies one Event. Events must come in version order with no gap: a DP that sees a
    /// gap asks for a snapshot instead.
    pub fn apply(&mut self, event: &Event) -> Result<(), StateError> {
        if event.version != self.version + 1 {
            return Err(StateError::VersionGap {
                have: self.version,
                got: event.version,
            });
        }
        match &event.change {
            Change::Put(e) => self.put(e.clone()),
            Change::Delete { kind, id } => {
                self.remove(*kind, *id);
            }
        }
        self.version = event.version;
        Ok(())
    }

    fn put(&mut self, entity: Entity) {
        let key = (entity.kind(), entity.id());
        self.remove(key.0, key.1);
        let digest = EntityDigest::of(&entity);
        self.hash.add(digest);
        for (index, k) in entity.unique_keys() {
            // Overwrite: inside a batch (an import) two entities may swap keys; the batch
            // as a whole was validated, so the final index is consistent.
            self.unique.insert((key.0, index, k), key.1);
        }
        for (rel, fk) in key.0.relations().iter().zip(entity.foreign_keys()) {
            if let Some(parent) = fk {
                self.children
                    .get_or_default((rel.parent, parent))
                    .insert(key);
            }
        }
        self.entities.insert(key, Stored { entity, digest });
    }

    fn remove(&mut self, kind: EntityKind, id: Uuid) -> Option<Entity> {
        let old = self.entities.remove(&(kind, id))?;
        self.hash.remove(old.digest);
        for (index, k) in old.entity.unique_keys() {
            let slot = (kind, index, k);
            if self.unique.get(&slot) == Some(&id) {
                self.unique.remove(&slot);
            }
        }
        for (rel, fk) in kind.relations().iter().zip(old.entity.foreign_keys()) {
            if let Some(parent) = fk {
                let slot = (rel.parent, parent);
                let emptied = match self.children.get_mut(&slot) {
                    Some(set) => {
                        set.remove(&(kind, id));
                        set.is_empty()
                    }
                    None => false,
                };
                if emptied {
                    self.children.remove(&slot);
                }
            }
        }
        Some(old.entity)
    }

    /// Undoes one change of a batch that failed later on: puts back what (kind, id) held
    /// before (or nothing), and the version the batch started from.
    pub(crate) fn restore(
        &mut self,
        kind: EntityKind,
        id: Uuid,
        previous: Option<Entity>,
        version: u64,
    ) {
        self.remove(kind, id);
        if let Some(e) = previous {
            self.put(e);
        }
        self.version = version;
    }

    /// The whole config at the current version.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.version,
            hash: self.hash,
            entities: self.iter().cloned().collect(),
        }
    }

    /// Rebuilds a state from a snapshot, verifying its hash: a torn or tampered snapshot
    /// is refused rather than served.
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Self, StateError> {
        let mut state = ConfigState::new();
        for e in snapshot.entities {
            if state.get(e.kind(), e.id()).is_some() {
                return Err(StateError::Duplicate {
                    kind: e.kind(),
                    id: e.id(),
                });
            }
            state.put(e);
        }
        if state.hash != snapshot.hash {
            return Err(StateError::HashMismatch {
                claimed: snapshot.hash,
                actual: state.hash,
            });
        }
        state.version = snapshot.version;
        Ok(state)
    }

    /// Recomputes the hash from scratch; used by tests and by integrity checks.
    pub fn recompute_hash(&self) -> ConfigHash {
        ConfigHash::of(self.iter())
    }
}

/// Two states are equal when they hold the same config at the same version; the indexes
/// are derived from the entities.
impl PartialEq for ConfigState {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.hash == other.hash && self.entities == other.entities
    }
}

impl Lookup for ConfigState {
    fn find_by_key(&self, kind: EntityKind, key: &str) -> Option<Uuid> {
        let index = match kind {
            EntityKind::Service | EntityKind::Route | EntityKind::Upstream | EntityKind::Sni => {
                "name"
            }
            EntityKind::Consumer | EntityKind::BasicauthCredential => "username",
            EntityKind::Plugin => "instance_name",
            EntityKind::KeyauthCredential => "key",
            // Targets and ACL groups are only unique under their parent; certificates have
            // no endpoint key.
            EntityKind::Target
            | EntityKind::Acl
            | EntityKind::Certificate
            | EntityKind::CaCertificate => return None,
        };
        self.unique.get(&(kind, index, key.to_string())).copied()
    }

    fn exists(&self, kind: EntityKind, id: Uuid) -> bool {
        self.entities.contains_key(&(kind, id))
    }
}
