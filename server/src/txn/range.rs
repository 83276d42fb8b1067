//! Range reads with etcd's options: limit/more/count, historical revision,
//! sort, keys_only, count_only and min/max create/mod revision filters.

use std::sync::Arc;

use kv_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use kv_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use kv_proto::mvccpb::KeyValue;

use crate::error::KvResult;
use crate::mvcc::{MvccError, ReadView};

/// Resolves the revision a request reads at, enforcing compaction and the head.
pub fn read_rev(view: &impl ReadView, requested: i64) -> Result<i64, MvccError> {
    let cur = view.rev();
    if requested <= 0 {
        return Ok(cur);
    }
    if requested > cur {
        return Err(MvccError::FutureRev);
    }
    if requested < view.compact_rev() {
        return Err(MvccError::Compacted);
    }
    Ok(requested)
}

fn filtered(req: &RangeRequest) -> bool {
    req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

fn keep(req: &RangeRequest, kv: &KeyValue) -> bool {
    !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
        || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
        || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
        || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
}

/// Executes a range request against `view`.
pub fn range(view: &impl ReadView, req: &RangeRequest) -> KvResult<RangeResponse> {
    crate::metrics::mvcc_range();
    let rev = read_rev(view, req.revision)?;
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    // Without sorting or filters the index order is the answer, so we can stop
    // fetching values once limit+1 are found (the extra one sets `more`).
    let fetch_cap = if order == SortOrder::None && !filtered(req) && req.limit > 0 {
        req.limit as usize + 1
    } else {
        usize::MAX
    };
    let mut count = 0i64;
    let mut kvs: Vec<Arc<KeyValue>> = Vec::new();
    // One key (a get) is looked up without a range iterator (a boxed one).
    let (one, many) = if req.range_end.is_empty() {
        (view.index().get(&req.key), None)
    } else {
        (None, Some(view.index().range(&req.key, &req.range_end)))
    };
    let hists = one
        .into_iter()
        .chain(many.into_iter().flatten().map(|(_, h)| h));
    for hist in hists {
        if hist.live_at(rev).is_none() {
            continue;
        }
        count += 1;
        if req.count_only || kvs.len() >= fetch_cap {
            continue;
        }
        if let Some(kv) = view.value_at(hist, rev)? {
            if keep(req, &kv) {
                kvs.push(kv);
            }
        }
    }
    sort(&mut kvs, order, target);
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    let kvs = kvs
        .into_iter()
        .map(|kv| {
            let mut kv = (*kv).clone();
            if req.keys_only {
                kv.value.clear();
            }
            kv
        })
        .collect();
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: view.rev(),
            ..Default::default()
        }),
        kvs,
        more,
        count,
    })
}

fn sort(kvs: &mut [Arc<KeyValue>], order: SortOrder, target: SortTarget) {
    if order == SortOrder::None {
        return;
    }
    match target {
        SortTarget::Key => {} // index order is already ascending by key
        SortTarget::Version => kvs.sort_by_key(|k| k.version),
        SortTarget::Create => kvs.sort_by_key(|k| k.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|k| k.mod_revision),
        SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
    if order == SortOrder::Descend {
        kvs.reverse();
    }
}
