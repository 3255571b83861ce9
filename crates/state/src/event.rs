//! Events: the unit of change that CPs replicate to DPs.

use serde::{Deserialize, Serialize};
use tidegate_model::{Entity, EntityKind};
use uuid::Uuid;

/// One change to the config, taking config version `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub version: u64,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// Create or replace the entity with this (kind, id).
    Put(Entity),
    Delete {
        kind: EntityKind,
        id: Uuid,
    },
}

impl Change {
    pub fn kind(&self) -> EntityKind {
        match self {
            Change::Put(e) => e.kind(),
            Change::Delete { kind, .. } => *kind,
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            Change::Put(e) => e.id(),
            Change::Delete { id, .. } => *id,
        }
    }
}
