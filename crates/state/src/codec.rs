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
    let (entity, rest) =
        postcard::take_from_bytes::<Entity>(&body.bytes).map_err(|e| malformed("entity", e))?;
    // Trailing bytes are a newer writer's appended fields; from our own schema (or an
    // older one) they can only mean corruption.
    if body.schema <= ENTITY_SCHEMA && !rest.is_empty() {
        return Err(CodecError::Trailing {
            schema: body.schema,
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

/// The same bytes as `encode_snapshot(&state.snapshot())`, without copying the config:
/// each entity is encoded straight from the state.
pub fn encode_state(state: &crate::ConfigState) -> Vec<u8> {
    struct Entities<'a>(&'a crate::ConfigState);
    impl Serialize for Entities<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for e in self.0.iter() {
                seq.serialize_element(&encode_entity(e))?;
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
    postcard::to_stdvec(&StateWire {
        format: SNAPSHOT_FORMAT,
        version: state.version(),
        hash: state.hash().0,
        entities: Entities(state),
    })
    .expect("snapshots encode infallibly")
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
