//! The callers waiting for this member's proposals, answered by the
//! applier. Before a leader proposes an entry it registers the entry's
//! callers here; the entry carries the registration's tag (`LogEntry`'s
//! `reply_to` and `proposer`), and the applier, once the batch holding the
//! entry is committed, sends each caller its result itself, as etcd's apply
//! loop triggers the waiting request (wait.Trigger). The result used to go
//! state-machine worker -> RaftCore -> `client_write`'s oneshot (-> the
//! batcher's submit task -> each caller): one to three task hand-offs more
//! between the commit and the caller.
//!
//! openraft's reply still comes and stays the path for errors (not leader,
//! entry truncated, raft stopped) and the fallback: whoever takes a
//! registration first answers its callers, so none is answered twice. A
//! registration lives as long as the write that proposed it (the writer
//! removes it when openraft answers, or when it is dropped), so the map
//! holds at most the entries in flight; it is bounded on top of that, past
//! [`MAX_WAITING`] a proposal is not registered and openraft's reply
//! answers it as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kv_proto::kvpb::InternalRequest;
use parking_lot::Mutex;
use prost::encoding::{self, WireType};
use tokio::sync::oneshot;

use crate::error::{KvError, KvResult};
use crate::raft::types::Applied;

/// One caller waiting for its request's applied result.
pub type Waiter = oneshot::Sender<KvResult<Applied>>;

/// Most entries registered at once. The proposer keeps two entries in
/// flight, so this is never reached unless that changes.
pub const MAX_WAITING: usize = 64;

/// `LogEntry`'s fields (proto/proto/kvpb/internal.proto).
const REQUESTS_FIELD: u32 = 1;
const REPLY_TO_FIELD: u32 = 2;
const PROPOSER_FIELD: u32 = 3;

/// Which registration an entry answers: 0s for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tag {
    pub proposer: u64,
    pub reply_to: u64,
}

pub struct Replies {
    /// This member's ID once its proposer runs; 0 (nothing registers) before.
    me: AtomicU64,
    next: AtomicU64,
    waiting: Mutex<Vec<(u64, Vec<Waiter>)>>,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            me: AtomicU64::new(0),
            // A random start per run: entries this member proposed in an
            // earlier run (applied again after a restart) carry ids from
            // another range, so they answer no caller of this run.
            next: AtomicU64::new(rand::random::<u64>() | 1),
            waiting: Mutex::new(Vec::new()),
        }
    }
}

impl Replies {
    /// Registrations are made by member `me` from now on.
    pub fn bind(&self, me: u64) {
        self.me.store(me, Ordering::Relaxed);
    }

    /// Registers the callers of one entry about to be proposed. The
    /// waiters come back when they cannot be registered (the map is full,
    /// or no member is bound): openraft's reply must answer them.
    pub fn register(self: &Arc<Self>, waiters: Vec<Waiter>) -> Result<Registration, Vec<Waiter>> {
        let proposer = self.me.load(Ordering::Relaxed);
        if proposer == 0 {
            return Err(waiters);
        }
        let mut waiting = self.waiting.lock();
        if waiting.len() >= MAX_WAITING {
            return Err(waiters);
        }
        let mut reply_to = self.next.fetch_add(1, Ordering::Relaxed);
        if reply_to == 0 {
            // Wrapped around: 0 means "nobody waits".
            reply_to = self.next.fetch_add(1, Ordering::Relaxed);
        }
        waiting.push((reply_to, waiters));
        Ok(Registration {
            replies: self.clone(),
            tag: Tag { proposer, reply_to },
            done: false,
        })
    }

    fn take(&self, reply_to: u64) -> Option<Vec<Waiter>> {
        let mut waiting = self.waiting.lock();
        let i = waiting.iter().position(|(id, _)| *id == reply_to)?;
        Some(waiting.swap_remove(i).1)
    }

    /// The applier, after the commit that applied an entry tagged `tag`:
    /// if this member registered it and nobody answered yet, sends each
    /// waiter its result, moving `results` out (openraft's reply then
    /// carries none). Returns whether it answered.
    pub fn answer(&self, tag: Tag, results: &mut Vec<KvResult<Applied>>) -> bool {
        if tag.reply_to == 0 || tag.proposer != self.me.load(Ordering::Relaxed) {
            return false;
        }
        let Some(waiters) = self.take(tag.reply_to) else {
            return false;
        };
        send(waiters, std::mem::take(results));
        true
    }

    /// Entries registered now (tests).
    #[cfg(test)]
    pub fn registered(&self) -> usize {
        self.waiting.lock().len()
    }
}

/// Sends `results[i]` to `waiters[i]`; all get an error if the counts
/// differ (an entry that did not decode has one result).
pub fn send(waiters: Vec<Waiter>, results: Vec<KvResult<Applied>>) {
    if waiters.is_empty() {
        return;
    }
    if results.len() != waiters.len() {
        let e = KvError::Internal(format!(
            "{} results for {} requests",
            results.len(),
            waiters.len()
        ));
        for w in waiters {
            let _ = w.send(Err(e.clone()));
        }
        return;
    }
    for (w, r) in waiters.into_iter().zip(results) {
        let _ = w.send(r);
    }
}

/// One registered entry. Dropping it removes its waiters, unanswered.
pub struct Registration {
    replies: Arc<Replies>,
    tag: Tag,
    done: bool,
}

impl Registration {
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The waiters, unless the applier took them already.
    pub fn take(&mut self) -> Option<Vec<Waiter>> {
        self.done = true;
        self.replies.take(self.tag.reply_to)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.done {
            self.replies.take(self.tag.reply_to);
        }
    }
}

/// One log entry's bytes: `tag` (if any), then `requests` (a `LogEntry`).
pub fn encode_entry(tag: Option<Tag>, requests: &[InternalRequest]) -> Vec<u8> {
    let tag = tag.unwrap_or_default();
    let mut len = encoding::message::encoded_len_repeated(REQUESTS_FIELD, requests);
    if tag.reply_to != 0 {
        len += encoding::uint64::encoded_len(REPLY_TO_FIELD, &tag.reply_to)
            + encoding::uint64::encoded_len(PROPOSER_FIELD, &tag.proposer);
    }
    let mut buf = Vec::with_capacity(len);
    if tag.reply_to != 0 {
        encoding::uint64::encode(REPLY_TO_FIELD, &tag.reply_to, &mut buf);
        encoding::uint64::encode(PROPOSER_FIELD, &tag.proposer, &mut buf);
    }
    encoding::message::encode_repeated(REQUESTS_FIELD, requests, &mut buf);
    buf
}

/// The tag at the front of an entry [`encode_entry`] wrote; none for any
/// other (written before tags, or by something else).
pub fn tag_of(bytes: &[u8]) -> Tag {
    let mut buf = bytes;
    let mut tag = Tag::default();
    for _ in 0..2 {
        let Ok((field, WireType::Varint)) = encoding::decode_key(&mut buf) else {
            break;
        };
        let Ok(v) = encoding::decode_varint(&mut buf) else {
            return Tag::default();
        };
        match field {
            REPLY_TO_FIELD => tag.reply_to = v,
            PROPOSER_FIELD => tag.proposer = v,
            _ => break,
        }
    }
    tag
}
