//! `ConfigState`: the materialised config, its version and hash, and the indexes that
//! validation needs (unique keys, children by parent).

use std::collections::BTreeSet;

use tidegate_model::hash::EntityDigest;
use tidegate_model::{ConfigHash, Entity, EntityKind, Lookup};
use uuid::Uuid;

use crate::event::{Change, Event};
use crate::shards::{fnv, folded, ShardKey, ShardMap};
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
///
/// The index is only looked up, never walked in order, so slots are ordered by their
/// hash first: a search then compares integers, and strings only for the slot it finds.
/// Comparing the strings at every step of each search was the largest single cost of
/// rebuilding a state of a million consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UniqueKey {
    /// `shards::fnv` of the other fields; also picks the shard.
    hash: u64,
    key: Box<str>,
    kind: EntityKind,
    index: &'static str,
}

impl UniqueKey {
    fn new(kind: EntityKind, index: &'static str, key: impl Into<Box<str>>) -> Self {
        let key = key.into();
        UniqueKey {
            hash: fnv(&[&[kind as u8], index.as_bytes(), key.as_bytes()]),
            key,
            kind,
            index,
        }
    }
}

impl Ord for UniqueKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.hash, &self.key, self.kind, self.index).cmp(&(
            other.hash,
            &other.key,
            other.kind,
            other.index,
        ))
    }
}

impl PartialOrd for UniqueKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

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
        folded(self.hash, ID_SHARD_BITS)
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
    children: ShardMap<(EntityKind, Uuid), Children>,
}

/// The children of one parent, in order. Most parents have one child (a consumer and its
/// credential): a one-element `BTreeSet` allocates a whole node (about 200 bytes), which
/// at a million consumers was the largest part of the index.
#[derive(Debug, Clone)]
enum Children {
    One((EntityKind, Uuid)),
    Many(BTreeSet<(EntityKind, Uuid)>),
}

impl Children {
    fn insert(&mut self, child: (EntityKind, Uuid)) {
        match self {
            Children::One(only) if *only == child => {}
            Children::One(only) => *self = Children::Many(BTreeSet::from([*only, child])),
            Children::Many(set) => {
                set.insert(child);
            }
        }
    }

    /// Removes `child`; whether none is left.
    fn remove(&mut self, child: &(EntityKind, Uuid)) -> bool {
        match self {
            Children::One(only) => only == child,
            Children::Many(set) => {
                set.remove(child);
                set.is_empty()
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (EntityKind, Uuid)> + '_ {
        let (one, many) = match self {
            Children::One(only) => (Some(*only), None),
            Children::Many(set) => (None, Some(set.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
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
        let id = self.unique.get(&UniqueKey::new(kind, index, key))?;
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
            .flat_map(|s| s.iter())
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
        self.put_new(key, entity, digest);
    }

    /// Puts an entity whose (kind, id) is absent, with its digest.
    fn put_new(&mut self, key: (EntityKind, Uuid), entity: Entity, digest: EntityDigest) {
        self.hash.add(digest);
        for (index, k) in entity.unique_keys() {
            // Overwrite: inside a batch (an import) two entities may swap keys; the batch
            // as a whole was validated, so the final index is consistent.
            self.unique.insert(UniqueKey::new(key.0, index, k), key.1);
        }
        for parent in parents(key.0, &entity) {
            self.children
                .upsert(parent, || Children::One(key), |set| set.insert(key));
        }
        self.entities.insert(key, Stored { entity, digest });
    }

    fn remove(&mut self, kind: EntityKind, id: Uuid) -> Option<Entity> {
        let old = self.entities.remove(&(kind, id))?;
        self.hash.remove(old.digest);
        for (index, k) in old.entity.unique_keys() {
            let slot = UniqueKey::new(kind, index, k);
            if self.unique.get(&slot) == Some(&id) {
                self.unique.remove(&slot);
            }
        }
        for (rel, fk) in kind.relations().iter().zip(old.entity.foreign_keys()) {
            if let Some(parent) = fk {
                let slot = (rel.parent, parent);
                let emptied = match self.children.get_mut(&slot) {
                    Some(set) => set.remove(&(kind, id)),
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
        let mut builder = Builder::default();
        for e in snapshot.entities {
            let digest = EntityDigest::of(&e);
            builder.push(e, digest);
            if builder.failed() {
                break;
            }
        }
        builder.finish(snapshot.version, snapshot.hash)
    }

    /// Recomputes the hash from scratch; used by tests and by integrity checks.
    pub fn recompute_hash(&self) -> ConfigHash {
        ConfigHash::of(self.iter())
    }
}

/// The entities `entity` (of `kind`) references.
fn parents(kind: EntityKind, entity: &Entity) -> impl Iterator<Item = (EntityKind, Uuid)> {
    kind.relations()
        .iter()
        .zip(entity.foreign_keys())
        .filter_map(|(rel, fk)| Some((rel.parent, fk?)))
}

/// A state rebuilt one entity at a time from a snapshot, in the snapshot's order, each
/// entity with the digest its sender's encoding gives (see [`Builder::finish`]).
#[derive(Default)]
pub(crate) struct Builder {
    state: ConfigState,
    /// The first problem; nothing is added after it.
    error: Option<StateError>,
    /// The greatest (kind, id) so far while every one came in increasing order, as a
    /// snapshot lists them: then a new one cannot be a duplicate and nothing needs
    /// removing before it is put.
    last: Option<(EntityKind, Uuid)>,
    unordered: bool,
    /// While in order, the entities of the shard being filled: a shard built at once from
    /// sorted entries has full nodes and costs no search per entity, where inserting in
    /// order leaves each node about half full.
    pending: Vec<((EntityKind, Uuid), Stored)>,
    /// While in order, the unique slots by shard and the (parent, child) links, in the
    /// order they came: the two indexes are built from them at the end, each shard at
    /// once. Inserted one at a time, in no order, they cost a search each (most of the
    /// time of a rebuild) and left their nodes about two thirds full.
    unique: Vec<Vec<(UniqueKey, Uuid)>>,
    links: Vec<((EntityKind, Uuid), (EntityKind, Uuid))>,
}

impl Builder {
    pub(crate) fn failed(&self) -> bool {
        self.error.is_some()
    }

    pub(crate) fn push(&mut self, entity: Entity, digest: EntityDigest) {
        if self.error.is_some() {
            return;
        }
        let key = (entity.kind(), entity.id());
        if self.unordered || self.last.is_some_and(|last| key <= last) {
            self.unordered = true;
            self.flush();
            self.build_indexes();
            if self.state.exists(key.0, key.1) {
                self.error = Some(StateError::Duplicate {
                    kind: key.0,
                    id: key.1,
                });
                return;
            }
            self.state.put_new(key, entity, digest);
            return;
        }
        if self.last.is_some_and(|last| last.shard() != key.shard()) {
            self.flush();
        }
        self.last = Some(key);
        self.state.hash.add(digest);
        for (index, k) in entity.unique_keys() {
            let slot = UniqueKey::new(key.0, index, k);
            if self.unique.is_empty() {
                self.unique = (0..1 << ID_SHARD_BITS).map(|_| Vec::new()).collect();
            }
            self.unique[slot.shard() as usize].push((slot, key.1));
        }
        self.links
            .extend(parents(key.0, &entity).map(|parent| (parent, key)));
        self.pending.push((key, Stored { entity, digest }));
    }

    /// Puts the unique slots and links gathered so far into the state's indexes, with
    /// the result of inserting them one at a time in the order they came.
    fn build_indexes(&mut self) {
        for (shard, mut slots) in std::mem::take(&mut self.unique).into_iter().enumerate() {
            // Stable: of the slots with one key, the last one is the one that stays, as
            // when each overwrote the one before.
            slots.sort_by(|a, b| a.0.cmp(&b.0));
            let mut kept: Vec<(UniqueKey, Uuid)> = Vec::with_capacity(slots.len());
            for (slot, id) in slots {
                match kept.last_mut() {
                    Some(last) if last.0 == slot => last.1 = id,
                    _ => kept.push((slot, id)),
                }
            }
            self.state.unique.extend_shard(shard as u32, kept);
        }
        let mut links = std::mem::take(&mut self.links);
        links.sort_unstable();
        links.dedup();
        let mut shard: Vec<((EntityKind, Uuid), Children)> = Vec::new();
        let mut links = links.into_iter().peekable();
        while let Some((parent, child)) = links.next() {
            let mut children = Children::One(child);
            while let Some((_, next)) = links.next_if(|(p, _)| *p == parent) {
                children.insert(next);
            }
            if shard
                .first()
                .is_some_and(|(p, _)| p.shard() != parent.shard())
            {
                let id = shard[0].0.shard();
                self.state
                    .children
                    .extend_shard(id, std::mem::take(&mut shard));
            }
            shard.push((parent, children));
        }
        if let Some(((kind, id), _)) = shard.first() {
            let id = (*kind, *id).shard();
            self.state.children.extend_shard(id, shard);
        }
    }

    fn flush(&mut self) {
        if let Some((key, _)) = self.pending.first() {
            let shard = key.shard();
            self.state
                .entities
                .extend_shard(shard, std::mem::take(&mut self.pending));
        }
    }

    /// The state at `version`, if its entities hash to `claimed`.
    ///
    /// The digests pushed may come from the bytes received rather than from encoding
    /// each entity again. They are the same when the sender encoded each entity as this
    /// build does, which is what a CP sends: decoding and encoding an entity gives its
    /// bytes back. A sum that does not match is recomputed from the entities before the
    /// snapshot is refused, so bytes that decode but were not written that way (an
    /// overlong varint) are judged as when every digest was computed here.
    pub(crate) fn finish(
        mut self,
        version: u64,
        claimed: ConfigHash,
    ) -> Result<ConfigState, StateError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.flush();
        self.build_indexes();
        let mut state = self.state;
        if state.hash != claimed {
            let mut actual = ConfigHash::EMPTY;
            for stored in state.entities.values_mut() {
                stored.digest = EntityDigest::of(&stored.entity);
                actual.add(stored.digest);
            }
            state.hash = actual;
            if actual != claimed {
                return Err(StateError::HashMismatch { claimed, actual });
            }
        }
        state.version = version;
        Ok(state)
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
        self.unique.get(&UniqueKey::new(kind, index, key)).copied()
    }

    fn exists(&self, kind: EntityKind, id: Uuid) -> bool {
        self.entities.contains_key(&(kind, id))
    }
}
