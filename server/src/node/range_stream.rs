//! etcd 3.7's KV/RangeStream: a range answered in chunks, all read at one
//! pinned revision, so that merged they equal Range's single response.
//!
//! Each chunk is its own read (no read transaction is held while the client
//! is slow), sized adaptively toward the request size limit. Only the last
//! chunk carries the header, `more` and `count`, as etcd sends them.

use std::sync::Arc;

use kv_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use kv_proto::etcdserverpb::{RangeRequest, RangeResponse, RangeStreamResponse};
use prost::Message;
use tokio::sync::mpsc;

use super::Node;
use crate::error::KvResult;
use crate::txn;

/// The first chunk's key limit; later chunks double or halve toward the target size.
const FIRST_CHUNK: i64 = 10;

/// Chunks in flight between the reader and a slow client: the reader waits
/// beyond this, so a stream holds at most this many chunks in memory.
const CHUNKS_BUFFERED: usize = 2;

/// Why a RangeStream request is refused before reading, with etcd's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    SortOrder,
    RevisionFilters,
}

impl Unsupported {
    pub fn text(&self) -> &'static str {
        match self {
            Unsupported::SortOrder => "RangeStream does not support custom sort orders",
            Unsupported::RevisionFilters => "RangeStream does not support revision filters",
        }
    }
}

/// The requests RangeStream answers: key order only, no revision filters
/// (what a chunk boundary could not preserve).
pub fn check(req: &RangeRequest) -> Result<(), Unsupported> {
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let key_order =
        order == SortOrder::None || (target == SortTarget::Key && order == SortOrder::Ascend);
    if !key_order {
        return Err(Unsupported::SortOrder);
    }
    if req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
    {
        return Err(Unsupported::RevisionFilters);
    }
    Ok(())
}

/// The next chunk's limit: double below half the target size, halve above
/// twice it, never below one key (a limit of 0 would mean "all").
fn next_limit(last: i64, last_bytes: usize, target: usize) -> i64 {
    let next = if last_bytes < target / 2 {
        last.saturating_mul(2)
    } else if last_bytes > target.saturating_mul(2) {
        last / 2
    } else {
        last
    };
    next.max(1)
}

impl Node {
    /// Starts a RangeStream: waits for the read barrier (unless
    /// serializable), checks permission, then reads chunk by chunk into the
    /// returned channel. The handler refuses what [`check`] refuses first.
    pub async fn range_stream(
        self: &Arc<Self>,
        req: RangeRequest,
    ) -> KvResult<mpsc::Receiver<KvResult<RangeStreamResponse>>> {
        self.admit_range(&req).await?;
        let (tx, rx) = mpsc::channel(CHUNKS_BUFFERED);
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(e) = node.send_chunks(req, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }

    async fn send_chunks(
        &self,
        mut req: RangeRequest,
        tx: &mpsc::Sender<KvResult<RangeStreamResponse>>,
    ) -> KvResult<()> {
        if req.count_only {
            let resp = self.read_chunk(&req)?;
            let last = RangeResponse {
                header: self.header(resp.header.map_or(0, |h| h.revision)),
                count: resp.count,
                ..Default::default()
            };
            let _ = tx.send(Ok(chunk(last))).await;
            return Ok(());
        }
        let total = if req.limit > 0 { req.limit } else { i64::MAX };
        req.limit = FIRST_CHUNK.min(total);
        let target = self.max_request_bytes;
        let mut sent = 0i64;
        let mut pinned = 0i64;
        loop {
            let resp = self.read_chunk(&req)?;
            if pinned == 0 {
                // The store's head when the stream began; later chunks read
                // at it, so writes after the start are not seen.
                pinned = resp.header.as_ref().map_or(0, |h| h.revision);
                if req.revision <= 0 {
                    req.revision = pinned;
                }
            }
            let bytes = resp.encoded_len();
            let n = resp.kvs.len() as i64;
            let done = !resp.more || sent + n >= total;
            let next_key = match resp.kvs.last() {
                Some(kv) if resp.more => {
                    let mut k = kv.key.clone();
                    k.push(0);
                    Some(k)
                }
                _ => None,
            };
            let mut out = RangeResponse {
                kvs: resp.kvs,
                ..Default::default()
            };
            if done {
                // This chunk's count covers its first key to the range end.
                out.count = sent + resp.count;
                out.more = resp.more;
                out.header = self.header(pinned);
            }
            sent += n;
            if tx.send(Ok(chunk(out))).await.is_err() || done {
                return Ok(()); // the client went away, or all is sent
            }
            let Some(next_key) = next_key else {
                return Ok(());
            };
            req.key = next_key;
            req.limit = next_limit(req.limit, bytes, target).min(total - sent);
        }
    }

    fn read_chunk(&self, req: &RangeRequest) -> KvResult<RangeResponse> {
        let snap = self.core.store.snapshot();
        txn::range(&snap, req)
    }
}

fn chunk(r: RangeResponse) -> RangeStreamResponse {
    RangeStreamResponse {
        range_response: Some(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_limit_doubles_below_half_and_halves_above_twice_the_target() {
        assert_eq!(next_limit(10, 100, 1000), 20);
        assert_eq!(next_limit(10, 700, 1000), 10);
        assert_eq!(next_limit(10, 2001, 1000), 5);
        assert_eq!(next_limit(1, 5000, 1000), 1);
        assert_eq!(next_limit(i64::MAX, 0, 1000), i64::MAX);
    }

    #[test]
    fn only_key_order_without_revision_filters_is_streamed() {
        let mut r = RangeRequest::default();
        assert_eq!(check(&r), Ok(()));
        r.sort_order = SortOrder::Ascend as i32;
        assert_eq!(check(&r), Ok(()));
        r.sort_target = SortTarget::Mod as i32;
        assert_eq!(check(&r), Err(Unsupported::SortOrder));
        let r = RangeRequest {
            min_mod_revision: 3,
            ..Default::default()
        };
        assert_eq!(check(&r), Err(Unsupported::RevisionFilters));
    }
}
