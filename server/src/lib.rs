//! kvd: an etcd-v3-compatible key-value store on openraft and redb.
//!
//! Data flows one way: [`api`] (gRPC handlers) → [`node`] (the `Node` facade that
//! proposes and reads) → [`raft`] (consensus) → [`apply`] (the only mutator)
//! → [`mvcc`] (revisioned store) → [`watch`] (watchers).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use clap::Parser;
//! let cfg = kvd::config::Config::parse_from(["kvd", "--data-dir", "/tmp/example.kvd"]);
//! let node = kvd::node::Node::start(&cfg).await?;
//! # let _ = node; Ok(()) }
//! ```

pub mod api;
pub mod apply;
pub mod auth;
pub mod config;
pub mod error;
pub mod fuzzing;
pub mod grpc;
pub mod header;
pub mod http;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod raft;
pub mod shutdown;
pub mod storage;
pub mod tls;
pub mod txn;
pub mod watch;
mod write_through;
