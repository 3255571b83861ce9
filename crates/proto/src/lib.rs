//! The `.proto` contracts of tidegate (in the repo's `proto/` folder), compiled to Rust.

/// Raft RPCs between control planes (`proto/raft.proto`).
pub mod raft {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tidegate.raft.v1");
}

/// The CP ↔ DP sync protocol (`proto/cluster.proto`): the contract across versions.
pub mod cluster {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tidegate.cluster.v1");
}
