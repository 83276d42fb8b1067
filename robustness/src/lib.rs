//! kv-robustness: the fault campaign that checks kvd keeps its promises.
//!
//! A round starts a 1- or 3-member cluster of real kvd (or etcd) processes,
//! runs concurrent client traffic through etcd-client with retries off and
//! watchers that record every response, injects faults chosen by a seeded
//! RNG (kill -9, SIGSTOP, partitions, leader moves, restarts behind large
//! values, WAL write/fsync errors and slow fsync through kvd's failpoints,
//! latency on peer traffic through a proxy per member, a follower removed
//! and added back as a new member), then checks the recorded history: linearizability of the
//! registers ([`linearizable`]), every acknowledged write in the final
//! history, the watch guarantees, and equal HashKV on every member
//! ([`check`]).

pub mod campaign;
pub mod check;
pub mod disk;
pub mod faults;
pub mod launcher;
pub mod linearizable;
pub mod membership;
pub mod ports;
pub mod proxy;
pub mod resolve;
pub mod traffic;
pub mod watcher;
