//! Commands: admin mutations as they travel through the Raft log.

use serde::{Deserialize, Serialize};
use tidegate_model::{Entity, EntityKind, Fixed};
use uuid::Uuid;

/// One admin mutation. Everything a replica needs to reach the same result is inside:
/// the request id (retries are applied once), and the id, time and entropy the proposing
/// node fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub request_id: Uuid,
    pub fixed: Fixed,
    pub op: Op,
}

/// The variant order is part of the Raft log encoding: append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// POST: `body` is a JSON object.
    Create { kind: EntityKind, body: String },
    /// PUT: replace the entity named by `key`, or create it; the key in the URL wins
    /// over the body.
    Upsert {
        kind: EntityKind,
        key: EntityRef,
        body: String,
    },
    /// PATCH: merge `body` into the entity named by `key`.
    Patch {
        kind: EntityKind,
        key: EntityRef,
        body: String,
    },
    /// DELETE, cascading to children whose relation says so.
    Delete { kind: EntityKind, key: EntityRef },
    /// A declarative import: the whole config is replaced by these entities, all or
    /// nothing. The proposer parsed and validated the file; apply re-checks the set.
    Import { entities: Vec<Entity> },
    /// Several ops applied in order as one, all or nothing (e.g. a certificate with its
    /// SNIs). Op `i` gets its own id and entropy derived from the Command's. No nesting,
    /// at most [`MAX_BATCH_OPS`] ops.
    Batch { ops: Vec<Op> },
    /// Data-plane status from the CP holding their streams: recorded next to the config,
    /// never changing its version or hash, and never de-duplicated by request id (the
    /// merge is idempotent). Rows last seen before `purge_before` (Unix seconds) are
    /// dropped: `cluster_data_plane_purge_delay` as fixed by the proposer.
    DataPlanes {
        reports: Vec<crate::DpReport>,
        purge_before: i64,
    },
    /// Independent Commands packed into one log entry by the leader's proposer (group
    /// commit: one append and one flush for writes that arrived together). Each member
    /// is applied on its own, exactly as if it had an entry of its own: its request id,
    /// its outcome, its events. The carrying Command's id and time are not used. Never
    /// nested, never inside a batch, at most [`MAX_GROUP_COMMANDS`] members.
    Group { commands: Vec<Command> },
}

/// The most Commands one [`Op::Group`] may carry.
pub const MAX_GROUP_COMMANDS: usize = 256;

/// The most ops one [`Op::Batch`] may hold.
pub const MAX_BATCH_OPS: usize = 1_000;

/// How a URL names an entity: by id, or by its endpoint key (name, username, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityRef {
    Id(Uuid),
    Key(String),
}

impl EntityRef {
    /// A URL segment: a UUID is an id, anything else an endpoint key, as in Kong.
    pub fn parse(segment: &str) -> Self {
        match tidegate_model::input::parse_uuid(segment) {
            Ok(id) => EntityRef::Id(id),
            Err(_) => EntityRef::Key(segment.to_string()),
        }
    }
}

impl Op {
    pub fn kind(&self) -> Option<EntityKind> {
        match self {
            Op::Create { kind, .. }
            | Op::Upsert { kind, .. }
            | Op::Patch { kind, .. }
            | Op::Delete { kind, .. } => Some(*kind),
            Op::Import { .. } | Op::DataPlanes { .. } | Op::Group { .. } => None,
            Op::Batch { ops } => ops.first().and_then(Op::kind),
        }
    }
}
