//! Txn compares against a view whose index caches no value: which compares
//! read a value from the backend, and that the answers stay etcd's.

use std::cell::Cell;
use std::collections::HashMap;

use kv_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use kv_proto::etcdserverpb::request_op::Request;
use kv_proto::etcdserverpb::{Compare, RangeRequest, RequestOp, TxnRequest};
use kv_proto::mvccpb::KeyValue;

use super::read_txn;
use crate::mvcc::{Index, MvccError, ReadView, Revision};

/// A read view over an index that caches nothing, counting backend reads.
struct Uncached {
    index: Index,
    rows: HashMap<u128, KeyValue>,
    rev: i64,
    fetches: Cell<usize>,
}

impl Uncached {
    fn new() -> Self {
        Uncached {
            index: Index::with_cache_budget(0),
            rows: HashMap::new(),
            rev: 0,
            fetches: Cell::new(0),
        }
    }

    /// Puts `key` at the next revision, as the applier would.
    fn put(&mut self, key: &[u8], value: &[u8], lease: i64) {
        self.rev += 1;
        let live = self.index.get(key).and_then(|h| h.live());
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: live.map_or(self.rev, |l| l.create_revision),
            mod_revision: self.rev,
            version: live.map_or(1, |l| l.version + 1),
            value: value.to_vec(),
            lease,
        };
        let r = Revision::new(self.rev, 0);
        self.index.put_uncached(r, &kv);
        self.rows.insert(r.to_key(), kv);
    }
}

impl ReadView for Uncached {
    fn rev(&self) -> i64 {
        self.rev
    }
    fn compact_rev(&self) -> i64 {
        0
    }
    fn index(&self) -> &Index {
        &self.index
    }
    fn fetch(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        self.fetches.set(self.fetches.get() + 1);
        Ok(self.rows.get(&rev.to_key()).cloned())
    }
}

fn cmp(
    key: &[u8],
    end: &[u8],
    target: CompareTarget,
    result: CompareResult,
    want: TargetUnion,
) -> Compare {
    Compare {
        key: key.to_vec(),
        range_end: end.to_vec(),
        target: target as i32,
        result: result as i32,
        target_union: Some(want),
    }
}

/// Whether a read-only txn with this one compare takes its success branch.
fn holds(view: &Uncached, c: Compare) -> bool {
    let get = RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: b"nothing".to_vec(),
            ..Default::default()
        })),
    };
    let t = TxnRequest {
        compare: vec![c],
        success: vec![get],
        failure: vec![],
    };
    read_txn(view, &t).expect("read txn").succeeded
}

fn view() -> Uncached {
    let mut v = Uncached::new();
    v.put(b"a", b"1", 0); // rev 1
    v.put(b"b", b"2", 7); // rev 2
    v.put(b"a", b"3", 0); // rev 3: a is at version 2, created at 1
    v
}

/// Key, range end, target, result, the compared value, whether it holds.
type Case = (
    &'static [u8],
    &'static [u8],
    CompareTarget,
    CompareResult,
    TargetUnion,
    bool,
);

// A compare-and-swap on mod_revision (kv-bench's txn) and every other
// non-VALUE compare are answered from the index: no value is read.
#[test]
fn non_value_compares_read_no_value() {
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Version};
    use TargetUnion as U;
    let v = view();
    let cases: [Case; 12] = [
        (b"a", b"", Mod, Equal, U::ModRevision(3), true),
        (b"a", b"", Mod, Equal, U::ModRevision(1), false),
        (b"a", b"", Version, Equal, U::Version(2), true),
        (b"a", b"", Create, Equal, U::CreateRevision(1), true),
        (b"b", b"", Lease, Equal, U::Lease(7), true),
        (b"a", b"", Lease, NotEqual, U::Lease(7), true),
        // A range: every key must satisfy it.
        (b"a", b"c", Mod, Greater, U::ModRevision(1), true),
        (b"a", b"c", Mod, Greater, U::ModRevision(2), false),
        (b"a", b"\0", Version, Less, U::Version(3), true),
        // An absent key compares as a zero KeyValue.
        (b"z", b"", Mod, Equal, U::ModRevision(0), true),
        (b"z", b"", Version, Less, U::Version(1), true),
        (b"z", b"", Create, Greater, U::CreateRevision(0), false),
    ];
    for (key, end, target, result, want, expected) in cases {
        let c = cmp(key, end, target, result, want);
        assert_eq!(holds(&v, c.clone()), expected, "{c:?}");
    }
    assert_eq!(v.fetches.get(), 0, "a non-VALUE compare read a value");
}

// VALUE compares still read the value, and an absent key fails them.
#[test]
fn value_compares_read_the_value() {
    use CompareResult::{Equal, Greater};
    use CompareTarget::Value;
    let v = view();
    assert!(holds(
        &v,
        cmp(b"a", b"", Value, Equal, TargetUnion::Value(b"3".to_vec()))
    ));
    assert!(!holds(
        &v,
        cmp(b"a", b"", Value, Equal, TargetUnion::Value(b"1".to_vec()))
    ));
    assert!(holds(
        &v,
        cmp(
            b"a",
            b"c",
            Value,
            Greater,
            TargetUnion::Value(b"0".to_vec())
        )
    ));
    assert!(!holds(
        &v,
        cmp(b"z", b"", Value, Equal, TargetUnion::Value(Vec::new()))
    ));
    assert_eq!(v.fetches.get(), 4);
}
