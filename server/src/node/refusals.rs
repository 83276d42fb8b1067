//! Rate-limited log lines for refused peer requests. A misconfigured member
//! (another cluster's, a stale data dir) retries many times a second, and a
//! stranger can send as fast as it likes: one line per request would flood
//! the log and hide everything else. Each (kind of refusal, peer address)
//! gets at most one line per [`EVERY`], and the next line says how many
//! were suppressed in between.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most one line per peer address and kind of refusal in this interval.
pub const EVERY: Duration = Duration::from_secs(10);
/// Peer addresses remembered at once. Past this, entries older than
/// [`EVERY`] are dropped, and if none is, the map starts over: a stranger
/// cycling addresses costs a few more lines, never unbounded memory.
const MAX_PEERS: usize = 1024;

/// Why a peer request was refused: each kind is limited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No or another cluster ID.
    ClusterId,
    /// An InstallSnapshot chunk out of place or too large.
    Snapshot,
}

struct Slot {
    /// When the last line for this peer and kind was written.
    logged: Instant,
    /// Refusals since then that wrote no line.
    suppressed: u64,
}

/// Decides which refusals get a log line.
pub struct RefusalLog {
    every: Duration,
    slots: Mutex<HashMap<(Refusal, Option<IpAddr>), Slot>>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(EVERY)
    }
}

impl RefusalLog {
    /// A log writing at most one line per peer and kind per `every`.
    pub fn new(every: Duration) -> Self {
        RefusalLog {
            every,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a refusal of `kind` from `peer` at `now` gets a line:
    /// `Some(n)` with the `n` refusals suppressed since the last line, or
    /// `None` to stay quiet.
    pub fn admit(&self, kind: Refusal, peer: Option<IpAddr>, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get_mut(&(kind, peer)) {
            if now.saturating_duration_since(slot.logged) < self.every {
                slot.suppressed += 1;
                return None;
            }
            let suppressed = slot.suppressed;
            *slot = Slot {
                logged: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if slots.len() >= MAX_PEERS {
            let every = self.every;
            slots.retain(|_, s| now.saturating_duration_since(s.logged) < every);
            if slots.len() >= MAX_PEERS {
                slots.clear();
            }
        }
        slots.insert(
            (kind, peer),
            Slot {
                logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn one_line_per_peer_and_kind_per_interval_with_the_suppressed_count() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.admit(Refusal::ClusterId, ip(1), t0), Some(0));
        for i in 1..=5 {
            let t = t0 + Duration::from_secs(i);
            assert_eq!(log.admit(Refusal::ClusterId, ip(1), t), None);
        }
        // Another peer, and another kind from the same peer, log on their own.
        assert_eq!(log.admit(Refusal::ClusterId, ip(2), t0), Some(0));
        assert_eq!(log.admit(Refusal::Snapshot, ip(1), t0), Some(0));
        // After the interval: one line, counting the five suppressed.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(log.admit(Refusal::ClusterId, ip(1), later), Some(5));
        assert_eq!(log.admit(Refusal::ClusterId, ip(1), later), None);
    }

    #[test]
    fn the_map_stays_bounded() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_PEERS as u32 * 3) {
            let peer = Some(IpAddr::from(i.to_be_bytes()));
            assert_eq!(log.admit(Refusal::ClusterId, peer, t0), Some(0));
        }
        assert!(log.slots.lock().len() <= MAX_PEERS);
    }
}
