//! Fills etcd response headers: cluster id, member id, raft term, revision.

use std::sync::atomic::{AtomicU64, Ordering};

use kv_proto::etcdserverpb::ResponseHeader;

/// Identity and term of this member, shared by every handler.
#[derive(Debug, Default)]
pub struct HeaderSource {
    pub cluster_id: u64,
    pub member_id: u64,
    term: AtomicU64,
}

impl HeaderSource {
    pub fn new(cluster_id: u64, member_id: u64) -> Self {
        HeaderSource {
            cluster_id,
            member_id,
            term: AtomicU64::new(0),
        }
    }

    pub fn set_term(&self, term: u64) {
        self.term.store(term, Ordering::Relaxed);
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }

    /// A header at `revision`.
    pub fn at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.term(),
        }
    }
}
