//! Wire types for kv: the etcd v3 gRPC API and kv's internal raft messages.
//!
//! The `.proto` sources live in `proto/proto/` and are compiled at build time
//! (by `protox` + `tonic-prost-build`, no `protoc` needed). They reproduce the
//! etcd 3.5 wire format exactly — package, service, method and message names,
//! field numbers, types and enum values — so stock etcd clients (etcdctl,
//! `clientv3`, `etcd-client`, ...) can talk to kvd and vice versa.
//!
//! Modules:
//! - [`mvccpb`]: `KeyValue`, `Event`.
//! - [`authpb`]: users, roles, permissions.
//! - [`etcdserverpb`]: the `KV`, `Watch`, `Lease`, `Cluster`, `Maintenance`
//!   and `Auth` services with their messages (clients in `*_client`, servers
//!   in `*_server` submodules).
//! - [`v3lockpb`], [`v3electionpb`]: the `Lock` and `Election` services.
//! - [`kvpb`]: kv's own `InternalRequest`, the unit of the replicated log.
//! - [`errors`]: etcd's table of gRPC error statuses (code + exact message).

pub mod errors;

/// etcd's storage types (`mvccpb`): `KeyValue` and `Event`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's auth records (`authpb`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// The etcd v3 client API (`etcdserverpb`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// etcd's lock service (`v3lockpb`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// etcd's election service (`v3electionpb`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// kv's internal messages (`kvpb`), not part of the etcd API.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod kvpb {
    tonic::include_proto!("kvpb");
}
