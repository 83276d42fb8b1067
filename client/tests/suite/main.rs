//! The client's integration suite: every test body runs against a real kvd
//! and a real etcd 3.4, each started as a process on free 127.0.0.1 ports.
//! One test binary (one link) for the whole suite.

mod auth;
mod cluster;
mod errors;
mod failover;
mod harness;
mod kv;
mod lease;
mod pki;
mod proxy;
mod server;
mod tls;
mod watch;

use std::time::Duration;

pub use harness::{BODY_TIMEOUT, run, within};
pub use server::{Kind, Server, fast_config};

/// Default deadline for waiting on one expected result.
pub const WAIT: Duration = Duration::from_secs(10);
