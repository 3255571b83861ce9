//! The binary encoding of Events and Snapshots (postcard), versioned for mixed-version
//! clusters.
//!
//! postcard is positional and not self-describing, so every entity travels as an
//! [`EntityBody`]: a schema number plus its own length-prefixed bytes. The rules that keep
//! an older reader working:
//! - a new field is appended at the end of an entity's struct and the schema number goes
//!   up; an older reader decodes the prefix it knows and ignores the rest of the body;
//! - anything else (a new field inside a nested record, a new enum variant in use) is
//!   served to an older DP in its own schema by the CP, which drops what that DP cannot
//!   represent (DESIGN.md §4);
//! - golden encodings in the tests fail when an encoding changes by accident.

use serde::{Deserialize, Serialize};
use tidegate_model::{ConfigHash, Entity, EntityKind};
use uuid::Uuid;

use crate::event::{Change, Event};
use crate::Snapshot;

/// The entity schema this build writes.
pub const ENTITY_SCHEMA: u16 = 1;
/// The snapshot layout this build writes.
pub const SNAPSHOT_FORMAT: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("cannot decode {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("snapshot format {0} is newer than this build understands ({SNAPSHOT_FORMAT}); upgrade this node")]
    SnapshotTooNew(u16),
    #[error("entity body of schema {schema} has {extra} unexpected trailing bytes")]
    Trailing { schema: u16, extra: usize },
}

#[derive(Serialize, Deserialize)]
struct EntityBody {
    schema: u16,
    bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum ChangeWire {
    Put(EntityBody),
    Delete { kind: EntityKind, id: Uuid },
}

#[derive(Serialize, Deserialize)]
struct EventWire {
    version: u64,
    change: ChangeWire,
}

#[derive(Serialize, Deserialize)]
struct SnapshotWire {
    format: u16,
    version: u64,
    hash: u128,
    entities: Vec<EntityBody>,
}

fn malformed(what: &'static str, e: postcard::Error) -> CodecError {
    CodecError::Malformed {
        what,
        reason: e.to_string(),
    }
}

fn encode_entity(e: &Entity) -> EntityBody {
    EntityBody {
        schema: ENTITY_SCHEMA,
        bytes: postcard::to_stdvec(e).expect("entities encode infallibly"),
    }
}

fn decode_entity(body: &EntityBody) -> Result<Entity, CodecError> {
    decode_entity_bytes(body.schema, &body.bytes)
}

/// Decodes `bytes`, the body of an entity of `schema`.
fn decode_entity_bytes(schema: u16, bytes: &[u8]) -> Result<Entity, CodecError> {
    let (entity, rest) =
        postcard::take_from_bytes::<Entity>(bytes).map_err(|e| malformed("entity", e))?;
    // Trailing bytes are a newer writer's appended fields; from our own schema (or an
    // older one) they can only mean corruption.
    if schema <= ENTITY_SCHEMA && !rest.is_empty() {
        return Err(CodecError::Trailing {
            schema,
            extra: rest.len(),
        });
    }
    Ok(entity)
}

pub fn encode_event(event: &Event) -> Vec<u8> {
    let change = match &event.change {
        Change::Put(e) => ChangeWire::Put(encode_entity(e)),
        Change::Delete { kind, id } => ChangeWire::Delete {
            kind: *kind,
            id: *id,
        },
    };
    postcard::to_stdvec(&EventWire {
        version: event.version,
        change,
    })
    .expect("events encode infallibly")
}

pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let wire: EventWire = postcard::from_bytes(bytes).map_err(|e| malformed("event", e))?;
    let change = match wire.change {
        ChangeWire::Put(body) => Change::Put(decode_entity(&body)?),
        ChangeWire::Delete { kind, id } => Change::Delete { kind, id },
    };
    Ok(Event {
        version: wire.version,
        change,
    })
}

pub fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    postcard::to_stdvec(&SnapshotWire {
        format: SNAPSHOT_FORMAT,
        version: s.version,
        hash: s.hash.0,
        entities: s.entities.iter().map(encode_entity).collect(),
    })
    .expect("snapshots encode infallibly")
}

/// Bytes reserved per entity when a whole state is encoded: above what most entities
/// take (a consumer or a key-auth credential takes about 47 bytes, a service or a route
/// about 86).
const RESERVED_PER_ENTITY: usize = 96;

/// The same bytes as `encode_snapshot(&state.snapshot())`, without copying the config:
/// each entity is encoded straight from the state.
pub fn encode_state(state: &crate::ConfigState) -> Vec<u8> {
    struct Entities<'a>(&'a crate::ConfigState);
    impl Serialize for Entities<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            /// An [`EntityBody`] over bytes it borrows: postcard writes a `Vec<u8>` and a
            /// byte slice alike (length, then the bytes).
            #[derive(Serialize)]
            struct BodyRef<'b> {
                schema: u16,
                bytes: Bytes<'b>,
            }
            struct Bytes<'b>(&'b [u8]);
            impl Serialize for Bytes<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_bytes(self.0)
                }
            }
            // One buffer for every entity: a fresh `Vec` each grew by reallocation, several
            // allocations per entity and millions per store.
            let mut scratch = Vec::new();
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for e in self.0.iter() {
                scratch.clear();
                scratch = postcard::to_extend(e, scratch).expect("entities encode infallibly");
                seq.serialize_element(&BodyRef {
                    schema: ENTITY_SCHEMA,
                    bytes: Bytes(&scratch),
                })?;
            }
            seq.end()
        }
    }
    /// [`SnapshotWire`]'s layout, field for field.
    #[derive(Serialize)]
    struct StateWire<'a> {
        format: u16,
        version: u64,
        hash: u128,
        entities: Entities<'a>,
    }
    // Reserved at a generous size per entity rather than grown by doubling, which
    // copied the whole buffer at each step; space reserved but never written costs
    // address space, not memory.
    let reserve = state.len().saturating_mul(RESERVED_PER_ENTITY);
    postcard::to_extend(
        &StateWire {
            format: SNAPSHOT_FORMAT,
            version: state.version(),
            hash: state.hash().0,
            entities: Entities(state),
        },
        Vec::with_capacity(reserve),
    )
    .expect("snapshots encode infallibly")
}

/// Why snapshot bytes did not become a state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    State(#[from] crate::StateError),
}

/// An entity's bytes inside a snapshot, borrowed from the snapshot's bytes.
#[derive(Deserialize)]
struct EntityBodyRef<'a> {
    schema: u16,
    bytes: &'a [u8],
}

/// `decode_snapshot` followed by [`crate::ConfigState::from_snapshot`], with the same
/// result and the same error for any input, without the two transient copies of the
/// config in between (the entity bodies and the decoded entities): each entity goes into
/// the state as soon as it is decoded, and its digest is taken from the bytes received.
pub fn decode_state(bytes: &[u8]) -> Result<crate::ConfigState, SnapshotError> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};
    use std::fmt;

    /// What the walk found besides the framing, in the order `decode_snapshot` and
    /// `from_snapshot` would report it.
    #[derive(Default)]
    struct Walk {
        format: u16,
        version: u64,
        hash: u128,
        entity_error: Option<CodecError>,
        builder: crate::state::Builder,
    }

    impl Walk {
        fn entity(&mut self, body: EntityBodyRef<'_>) {
            if self.format > SNAPSHOT_FORMAT || self.entity_error.is_some() {
                return;
            }
            match decode_entity_bytes(body.schema, body.bytes) {
                Ok(entity) => {
                    // From a newer schema the bytes carry fields this build drops, and
                    // hash differently from what it holds.
                    let digest = if body.schema == ENTITY_SCHEMA {
                        tidegate_model::hash::EntityDigest::of_encoded(body.bytes)
                    } else {
                        tidegate_model::hash::EntityDigest::of(&entity)
                    };
                    self.builder.push(entity, digest);
                }
                Err(e) => self.entity_error = Some(e),
            }
        }
    }

    struct Top<'w>(&'w mut Walk);
    impl<'de> Visitor<'de> for Top<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a snapshot")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            use serde::de::Error;
            let missing = || A::Error::custom("missing field");
            self.0.format = seq.next_element()?.ok_or_else(missing)?;
            self.0.version = seq.next_element()?.ok_or_else(missing)?;
            self.0.hash = seq.next_element()?.ok_or_else(missing)?;
            seq.next_element_seed(Entities(&mut *self.0))?
                .ok_or_else(missing)
        }
    }

    struct Entities<'w>(&'w mut Walk);
    impl<'de> DeserializeSeed<'de> for Entities<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Entities<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("entity bodies")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(body) = seq.next_element::<EntityBodyRef<'de>>()? {
                self.0.entity(body);
            }
            Ok(())
        }
    }

    let mut walk = Walk::default();
    let mut de = postcard::Deserializer::from_bytes(bytes);
    serde::Deserializer::deserialize_tuple(&mut de, 4, Top(&mut walk))
        .map_err(|e| malformed("snapshot", e))?;
    if walk.format > SNAPSHOT_FORMAT {
        return Err(CodecError::SnapshotTooNew(walk.format).into());
    }
    if let Some(e) = walk.entity_error {
        return Err(e.into());
    }
    Ok(walk.builder.finish(walk.version, ConfigHash(walk.hash))?)
}

/// Decodes a snapshot. The hash is not checked here: [`crate::ConfigState::from_snapshot`]
/// does that when it rebuilds the state.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, CodecError> {
    let wire: SnapshotWire = postcard::from_bytes(bytes).map_err(|e| malformed("snapshot", e))?;
    if wire.format > SNAPSHOT_FORMAT {
        return Err(CodecError::SnapshotTooNew(wire.format));
    }
    let entities = wire
        .entities
        .iter()
        .map(decode_entity)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Snapshot {
        version: wire.version,
        hash: ConfigHash(wire.hash),
        entities,
    })
}

#[cfg(test)]
mod tests;
