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
        (view.index().get(&req.key).map(|h| (&req.key, h)), None)
    } else {
        (None, Some(view.index().range(&req.key, &req.range_end)))
    };
    let hists = one.into_iter().chain(many.into_iter().flatten());
    // Keys only: no value is read unless the sort needs it.
    let without_values = req.keys_only && target != SortTarget::Value;
    for (key, hist) in hists {
        if hist.live_at(rev).is_none() {
            continue;
        }
        count += 1;
        if req.count_only || kvs.len() >= fetch_cap {
            continue;
        }
        let kv = if without_values {
            view.key_at(key, hist, rev)?
        } else {
            view.value_at(hist, rev)?
        };
        if let Some(kv) = kv {
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::HashMap;

    use super::*;
    use crate::mvcc::{Index, Revision};

    /// A read view over an index whose values are not cached, counting
    /// the reads of the backend.
    struct View {
        index: Index,
        rows: HashMap<(i64, i64), KeyValue>,
        fetches: Cell<usize>,
    }

    impl ReadView for View {
        fn rev(&self) -> i64 {
            4
        }
        fn compact_rev(&self) -> i64 {
            0
        }
        fn index(&self) -> &Index {
            &self.index
        }
        fn fetch(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
            self.fetches.set(self.fetches.get() + 1);
            Ok(self.rows.get(&(rev.main, rev.sub)).cloned())
        }
    }

    fn view() -> View {
        let mut v = View {
            index: Index::default(),
            rows: HashMap::new(),
            fetches: Cell::new(0),
        };
        let puts = [
            (b"k1", 2, 2, 1, 0),
            (b"k1", 3, 2, 2, 0),
            (b"k2", 4, 4, 1, 7),
        ];
        for (key, main, create, version, lease) in puts {
            let kv = KeyValue {
                key: key.to_vec(),
                create_revision: create,
                mod_revision: main,
                version,
                value: vec![main as u8; 1024],
                lease,
            };
            // As after a restart or a snapshot install: nothing cached.
            v.index.put_uncached(Revision::new(main, 0), &kv);
            v.rows.insert((main, 0), kv);
        }
        v
    }

    fn req(revision: i64, keys_only: bool) -> RangeRequest {
        RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            revision,
            keys_only,
            ..Default::default()
        }
    }

    #[test]
    fn keys_only_reads_no_current_value() {
        let v = view();
        let full = range(&v, &req(0, false)).unwrap();
        assert_eq!(v.fetches.replace(0), 2);
        let keys = range(&v, &req(0, true)).unwrap();
        assert_eq!(v.fetches.get(), 0, "current versions come from the index");
        let want: Vec<KeyValue> = full
            .kvs
            .into_iter()
            .map(|mut kv| {
                kv.value.clear();
                kv
            })
            .collect();
        assert_eq!(keys.kvs, want);
        assert_eq!(keys.count, 2);
        // One key, as a get asks for it.
        let one = RangeRequest {
            key: b"k2".to_vec(),
            keys_only: true,
            ..Default::default()
        };
        assert_eq!(range(&v, &one).unwrap().kvs, want[1..].to_vec());
        assert_eq!(v.fetches.get(), 0);
    }

    #[test]
    fn keys_only_reads_an_older_version_from_the_backend() {
        let v = view();
        let old = range(&v, &req(2, true)).unwrap();
        assert_eq!(v.fetches.get(), 1);
        assert_eq!(old.kvs.len(), 1);
        assert_eq!((old.kvs[0].mod_revision, old.kvs[0].version), (2, 1));
        assert!(old.kvs[0].value.is_empty());
        // Sorting by value needs the values.
        let by_value = RangeRequest {
            sort_target: SortTarget::Value as i32,
            ..req(0, true)
        };
        v.fetches.set(0);
        range(&v, &by_value).unwrap();
        assert_eq!(v.fetches.get(), 2);
    }
}
