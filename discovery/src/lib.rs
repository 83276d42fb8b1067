//! Service discovery, distributed locks and leader elections on kv (or any
//! etcd v3 server), built only on the public API of [`kv_client`].
//!
//! - [`Session`]: a lease kept alive in the background, with a loss signal.
//! - [`Registry`] / [`Registration`]: register a service instance on a lease;
//!   it is re-registered by itself after the lease is lost (a network blip
//!   longer than the TTL, a revoke) and removed when the process dies.
//!   It also watches its own key and writes the entry straight back if
//!   someone deletes it while the lease is alive.
//! - [`Check`]: health checks the registering process runs itself (HTTP,
//!   TCP, gRPC health, command, TTL), as Consul's agent does; each state
//!   change is one write ([`Registry::register_with_checks`]).
//! - [`Subscription`]: the live set of a service's instances, fed by a
//!   watch, optionally filtered on tags, metadata and health
//!   ([`ServiceFilter`], [`Registry::subscribe_with`]); usable as a
//!   [`tower::discover::Discover`] endpoint set.
//! - [`grpc::channel`]: a tonic channel balancing over a service's live
//!   instances, following every change; a killed instance fails only the
//!   calls in flight to it.
//! - [`Mutex`] and [`Election`]: etcd's `concurrency` package semantics and
//!   key layout, so they interoperate with `etcdctl lock` and `etcdctl elect`.
//! - [`recipes`]: queues, barriers, a readers-writer lock (etcd's
//!   `experimental/recipes` key layout) and a counting [`Semaphore`].
//!
//! Register in three lines:
//!
//! ```no_run
//! # async fn demo(client: kv_client::Client) -> kv_discovery::Result<()> {
//! use kv_discovery::{Registry, ServiceInstance};
//! let reg = Registry::new(client).register(ServiceInstance::new("api", "127.0.0.1:8080")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Key layout
//!
//! | what | key | value | lease |
//! | --- | --- | --- | --- |
//! | a service instance | `<namespace>/services/<service>/<id>` | [`ServiceInstance`] as JSON | the registration's |
//! | a lock waiter / holder | `<name>/<lease id in hex>` | empty | the session's |
//! | an election candidate / leader | `<name>/<lease id in hex>` | the proposal | the session's |
//!
//! The namespace defaults to [`DEFAULT_NAMESPACE`] (`kv`). Lock and election
//! keys are exactly etcd's (`fmt.Sprintf("%s/%x", name, lease)`): the holder
//! of a lock, or the leader, is the key under `<name>/` with the lowest
//! create revision.

#![warn(missing_docs)]

pub mod check;
#[cfg(feature = "dns")]
pub mod dns;
pub mod election;
pub mod error;
pub mod filter;
pub mod grpc;
pub mod instance;
pub mod mutex;
mod ownkey;
pub mod recipes;
mod registration;
pub mod registry;
pub mod session;
pub mod subscription;
mod util;

pub use check::{Check, CheckKind, CheckState, MAX_CHECK_OUTPUT};
#[cfg(feature = "dns")]
pub use dns::{DnsOptions, DnsServer};
pub use election::{Election, Leader, Leadership, Observer};
pub use error::{Error, Result};
pub use filter::{HealthFilter, ServiceFilter};
pub use instance::{Health, ServiceInstance};
pub use mutex::{LockGuard, Mutex};
pub use recipes::{Barrier, DoubleBarrier, PriorityQueue, Queue, RwMutex, Semaphore};
pub use registry::{
    DEFAULT_NAMESPACE, DEFAULT_REGISTRATION_TTL, Registration, RegistrationEvent, Registry,
};
pub use session::{DEFAULT_SESSION_TTL, Session};
pub use subscription::{ServiceDiscover, ServiceEvent, Subscription};
