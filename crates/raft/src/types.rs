//! The openraft type config: what the log carries and what applying it answers.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use tidegate_state::{Command, Outcome};

use crate::runtime::SeededRuntime;

/// Raft node ids are the operator's `raft_node_id`.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// tidegate's Raft: admin Commands in, [`Response`]s out.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = SeededRuntime,
);

/// What applying one log entry answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The Command's outcome. Blank and membership entries answer an empty success
    /// (no entity, no events) so that every entry has one.
    pub outcome: Outcome,
    /// The config version after the entry was applied.
    pub config_version: u64,
    /// For an `Op::Group` entry, each member's outcome in order (`outcome` is then the
    /// carrier's empty success); empty for every other entry.
    pub members: Vec<Outcome>,
}

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;
