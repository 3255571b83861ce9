//! The `.proto` contracts of tidegate (in the repo's `proto/` folder), compiled to Rust.

/// Raft RPCs between control planes (`proto/raft.proto`).
pub mod raft {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tidegate.raft.v1");
}
