//! The control plane: the Kong-compatible Admin API, the replicated write path (every
//! mutation is a Command through Raft; followers forward to the leader and answer once
//! their own state machine applied it), and cluster membership.
//!
//! ```text
//!  HTTP ──▶ admin (routing, Kong bodies) ──▶ Backend::write(Op) ──▶ write path ──▶ Raft
//!                                      └──▶ Backend::read(|machine| …)  (local state)
//! ```
//!
//! The Admin API only sees the [`Backend`] trait, so it is tested against an in-process
//! machine and runs unchanged on a real Raft node. The cluster console ([`console`]) is a
//! read-only page over the same node.

pub mod admin;
mod backend;
pub mod compat;
pub mod console;
pub mod node;
#[doc(hidden)]
pub mod planted;
pub mod sync;

pub use backend::{
    Backend, ClusterMember, ClusterStatus, MemberChangeError, NodeInfo, WriteError, WriteOk,
};
