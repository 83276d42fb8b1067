//! The discovery toolkit's integration suite: every body runs against a
//! real kvd and a real etcd 3.4 (processes on free 127.0.0.1 ports), using
//! the client suite's server and proxy harness.

#[path = "../../../client/tests/suite/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../../../client/tests/suite/harness.rs"]
mod harness;
#[path = "../../../client/tests/suite/proxy.rs"]
#[allow(dead_code)]
mod proxy;
#[path = "../../../client/tests/suite/server.rs"]
#[allow(dead_code)]
mod server;

mod backends;
mod check_retry;
mod checks;
mod child;
#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "dns")]
mod dns_dig;
mod election;
mod failover;
mod grpc_channel;
mod lock;
mod recipes_barrier_killed;
mod recipes_go;
mod recipes_queue;
mod recipes_sync;
mod registry;
mod robust;

use std::time::Duration;

pub use harness::{BODY_TIMEOUT, run, within};
pub use server::{Kind, Server, fast_config};

/// Generous deadline for one expected observation.
pub const WAIT: Duration = Duration::from_secs(30);
