//! What the Admin API needs from a control-plane node.

use std::future::Future;

use serde::Serialize;
use tidegate_state::{Machine, Op, Outcome};
use uuid::Uuid;

/// A write that reached the log and was applied on this node.
#[derive(Debug, Clone)]
pub struct WriteOk {
    /// The Command's answer: what it did, or Kong's error body.
    pub outcome: Outcome,
}

/// A write that could not be decided. Each maps to a 5xx with a body that tells the
/// operator what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// No leader could be reached within the write deadline (lost quorum, election).
    #[error("no control plane leader is reachable: {detail}")]
    NoLeader { detail: String },
    /// The entry may or may not commit; the client should retry with the same request id.
    #[error("the write was not confirmed in time: {detail}")]
    Timeout { detail: String },
    /// The node's storage failed; the node is unhealthy and needs an operator.
    #[error("storage failure on this control plane: {detail}")]
    Storage { detail: String },
    /// The node is shutting down.
    #[error("this control plane is shutting down")]
    ShuttingDown,
}

/// Static facts about the node, for `GET /`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub node_id: Uuid,
    pub hostname: String,
    /// `traditional` or `control_plane`.
    pub role: String,
    pub tidegate_version: String,
    pub admin_listen: Vec<String>,
}

/// One CP as `GET /clustering/control-planes` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterMember {
    pub id: u64,
    pub address: String,
    /// `voter` or `learner`.
    pub kind: String,
    pub leader: bool,
    /// Whether this node currently hears from it (the leader's replication view; `null`
    /// on followers, which do not track it).
    pub reachable: Option<bool>,
    /// The last log index known to be replicated to it (leader's view).
    pub matched_index: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub config_version: u64,
    pub config_hash: String,
    pub members: Vec<ClusterMember>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum MemberChangeError {
    #[error("{0}")]
    Invalid(String),
    /// Another membership change is running on this node; retrying later can succeed.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A control-plane node as the Admin API sees it.
pub trait Backend: Send + Sync + 'static {
    /// Proposes `op` and answers once this node's state machine applied it.
    /// `request_id` de-duplicates retries; `None` makes a fresh one.
    fn write(
        &self,
        op: Op,
        request_id: Option<Uuid>,
    ) -> impl Future<Output = Result<WriteOk, WriteError>> + Send;

    /// Reads this node's applied state. Never waits for the leader.
    fn read<T>(&self, f: impl FnOnce(&Machine) -> T) -> T;

    fn node_info(&self) -> NodeInfo;

    /// The plugins this node's Admin API accepts (Kong's `plugins` setting, checked by
    /// the node that receives the write, as in Kong); None: every bundled plugin.
    fn enabled_plugins(&self) -> Option<Vec<String>> {
        None
    }

    /// Unix seconds on this node: what a declarative file is loaded at, fixed before the
    /// write so that every replica reads the file the same way.
    fn now_unix(&self) -> i64;

    /// Fresh randomness for values the Admin API fixes before a write (a declarative
    /// file's generated keys, the id of a certificate that SNIs are created under).
    fn entropy(&self) -> u128;

    /// `Err` with what an operator should do when the node's storage or Raft failed.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    fn cluster_status(&self) -> impl Future<Output = ClusterStatus> + Send;

    /// Adds a CP: as a learner first, then as a voter once it caught up.
    fn add_member(
        &self,
        id: u64,
        address: String,
    ) -> impl Future<Output = Result<ClusterStatus, MemberChangeError>> + Send;

    fn remove_member(
        &self,
        id: u64,
    ) -> impl Future<Output = Result<ClusterStatus, MemberChangeError>> + Send;
}
