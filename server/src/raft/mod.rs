//! Consensus: openraft's type configuration, our log store, the peer network
//! and the small [`Consensus`] trait the rest of kvd proposes through.

pub mod failpoint;
mod log_cache;
mod log_ids;
pub mod log_store;
pub mod network;
pub mod snapshot_file;
pub mod snapshot_receiver;
pub mod types;

pub use types::{NodeId, RaftRequest, RaftResponse, TypeConfig};
