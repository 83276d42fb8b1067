//! Leases: TTLs, attached keys and expiry deadlines.
//!
//! Grants and revokes are applied from the raft log (so every member agrees on
//! which leases exist); deadlines are local, kept only by the leader, and
//! renewed by keep-alives without going through the log, as in etcd. This
//! module never touches the key-value store: revoking a lease's keys is the
//! applier's job.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::txn::LeaseBook;

/// etcd's largest allowed TTL (seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone)]
pub struct Lease {
    pub id: i64,
    /// Granted TTL in seconds.
    pub ttl: i64,
    pub expiry: Instant,
    pub keys: BTreeSet<Vec<u8>>,
    /// Its deadline passed and its revoke is on the way (see
    /// [`Lessor::postpone`]): keep-alives no longer renew it.
    pub revoking: bool,
}

impl Lease {
    /// Seconds left, rounded up as etcd reports them (never below zero).
    pub fn remaining(&self, now: Instant) -> i64 {
        let left = self.expiry.saturating_duration_since(now);
        (left.as_millis() as i64 + 999) / 1000
    }
}

/// All leases of this member.
#[derive(Debug)]
pub struct Lessor {
    leases: HashMap<i64, Lease>,
    /// Smallest TTL a grant gets (etcd: 1.5 election timeouts, rounded up).
    min_ttl: i64,
}

impl LeaseBook for Lessor {
    fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }
    fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }
    fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.keys.remove(key);
        }
    }
}

impl Lessor {
    pub fn new(election_timeout: Duration) -> Self {
        let min = (election_timeout.as_millis() as i64 * 3 / 2 + 999) / 1000;
        Lessor {
            leases: HashMap::new(),
            min_ttl: min.max(1),
        }
    }

    /// The TTL a grant of `ttl` seconds actually gets.
    pub fn effective_ttl(&self, ttl: i64) -> i64 {
        ttl.max(self.min_ttl)
    }

    /// Adds a lease (from the log or from disk on restart) with a fresh deadline.
    pub fn grant(&mut self, id: i64, ttl: i64) -> &Lease {
        let ttl = self.effective_ttl(ttl);
        self.leases.entry(id).or_insert_with(|| Lease {
            id,
            ttl,
            expiry: Instant::now() + Duration::from_secs(ttl as u64),
            keys: BTreeSet::new(),
            revoking: false,
        })
    }

    /// Removes a lease, returning its attached keys in sorted order.
    pub fn revoke(&mut self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.leases
            .remove(&id)
            .map(|l| l.keys.into_iter().collect())
    }

    /// Resets a lease's deadline to a full TTL; returns the TTL. `None`
    /// for an unknown lease, and for one being revoked: etcd waits for that
    /// revoke and then answers "not found" (TTL 0) rather than a TTL the
    /// lease will not live.
    pub fn renew(&mut self, id: i64) -> Option<i64> {
        let l = self.leases.get_mut(&id).filter(|l| !l.revoking)?;
        l.expiry = Instant::now() + Duration::from_secs(l.ttl as u64);
        Some(l.ttl)
    }

    /// Gives every lease a full TTL from now (on restart or on becoming leader),
    /// so a leader change never expires a live lease.
    pub fn refresh_all(&mut self, extend: Duration) {
        let now = Instant::now();
        for l in self.leases.values_mut() {
            l.expiry = now + Duration::from_secs(l.ttl as u64) + extend;
            l.revoking = false;
        }
    }

    /// Pushes a deadline back while its revoke is in flight, so the expiry
    /// loop does not propose the same revoke again (it retries after `by`),
    /// and stops renewals of the lease.
    pub fn postpone(&mut self, id: i64, by: Duration) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.expiry = Instant::now() + by;
            l.revoking = true;
        }
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Leases whose deadline has passed, at most `limit` of them.
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .leases
            .values()
            .filter(|l| l.expiry <= now)
            .map(|l| l.id)
            .take(limit)
            .collect();
        out.sort_unstable();
        out
    }

    /// Forgets everything (before loading a snapshot).
    pub fn clear(&mut self) {
        self.leases.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_and_attach() {
        let mut l = Lessor::new(Duration::from_millis(1000));
        assert_eq!(l.grant(1, 1).ttl, 2);
        assert_eq!(l.grant(2, 60).ttl, 60);
        l.attach(2, b"b");
        l.attach(2, b"a");
        l.attach(9, b"x"); // unknown lease: ignored
        assert_eq!(l.revoke(2), Some(vec![b"a".to_vec(), b"b".to_vec()]));
        assert!(!l.exists(2));
    }

    #[test]
    fn expiry() {
        let mut l = Lessor::new(Duration::from_millis(100));
        l.grant(7, 1);
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(l.expired(later, 10), vec![7]);
        assert!(l.expired(Instant::now(), 10).is_empty());
        assert_eq!(l.get(7).map(|x| x.remaining(Instant::now())), Some(1));
    }

    // A lease whose revoke is in flight is not renewed (etcd answers TTL 0
    // once the revoke lands), until a new leader gives every lease a full TTL.
    #[test]
    fn no_renewal_while_revoking() {
        let mut l = Lessor::new(Duration::from_millis(100));
        l.grant(7, 5);
        l.grant(8, 5);
        assert_eq!(l.renew(7), Some(5));
        l.postpone(7, Duration::from_secs(3));
        assert_eq!(l.renew(7), None);
        assert_eq!(l.renew(8), Some(5));
        assert_eq!(l.renew(9), None);
        l.refresh_all(Duration::ZERO);
        assert_eq!(l.renew(7), Some(5));
    }
}
