//! Options of the KV calls: which keys, which revision, what to return.
//!
//! Each wraps the protobuf request with chained `with_*` setters; the range
//! helpers ([`prefix_end`]) compute `range_end` exactly as etcd's client does.

use kv_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

pub use kv_proto::etcdserverpb::range_request::{SortOrder, SortTarget};

/// Which keys an operation covers besides its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// Only the key itself.
    #[default]
    Single,
    /// Every key starting with the key.
    Prefix,
    /// Every key ≥ the key.
    FromKey,
    /// Keys in `[key, end)`.
    End(Vec<u8>),
}

impl KeyRange {
    /// The `(key, range_end)` pair etcd expects for `key` and this range.
    pub(crate) fn resolve(&self, key: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        match self {
            KeyRange::Single => (key, Vec::new()),
            KeyRange::End(end) => (key, end.clone()),
            KeyRange::FromKey if key.is_empty() => (vec![0], vec![0]),
            KeyRange::FromKey => (key, vec![0]),
            KeyRange::Prefix if key.is_empty() => (vec![0], vec![0]),
            KeyRange::Prefix => {
                let end = prefix_end(&key);
                (key, end)
            }
        }
    }
}

/// The smallest key greater than every key starting with `prefix`
/// (`[0]`, meaning "no end", when there is none).
///
/// ```
/// assert_eq!(kv_client::options::prefix_end(b"a/"), b"a0");
/// assert_eq!(kv_client::options::prefix_end(&[b'a', 0xff]), b"b");
/// assert_eq!(kv_client::options::prefix_end(&[0xff]), [0]);
/// ```
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Options of [`Client::get`](crate::Client::get).
///
/// ```
/// use kv_client::{GetOptions, SortOrder, SortTarget};
/// let opts = GetOptions::new()
///     .with_prefix()
///     .with_limit(10)
///     .with_sort(SortTarget::Key, SortOrder::Descend)
///     .with_serializable();
/// // Every other setter, on a range read at an old revision:
/// let old = GetOptions::new()
///     .with_range("z")
///     .with_revision(42)
///     .with_keys_only()
///     .with_min_mod_revision(10)
///     .with_max_mod_revision(40)
///     .with_min_create_revision(1)
///     .with_max_create_revision(40);
/// let everything = GetOptions::new().with_from_key().with_count_only();
/// ```
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    req: RangeRequest,
    range: KeyRange,
}

impl GetOptions {
    /// Default options: a linearizable read of one key at the latest revision.
    pub fn new() -> Self {
        Self::default()
    }
    /// Reads every key with the given key as prefix.
    pub fn with_prefix(mut self) -> Self {
        self.range = KeyRange::Prefix;
        self
    }
    /// Reads every key ≥ the given key.
    pub fn with_from_key(mut self) -> Self {
        self.range = KeyRange::FromKey;
        self
    }
    /// Reads the keys in `[key, end)`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = KeyRange::End(end.into());
        self
    }
    /// Returns at most `limit` keys (0 = no limit).
    pub fn with_limit(mut self, limit: i64) -> Self {
        self.req.limit = limit;
        self
    }
    /// Reads at this revision (0 = latest).
    pub fn with_revision(mut self, revision: i64) -> Self {
        self.req.revision = revision;
        self
    }
    /// Sorts the result.
    pub fn with_sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.req.sort_target = target as i32;
        self.req.sort_order = order as i32;
        self
    }
    /// Serves the read from the local member without a quorum round.
    pub fn with_serializable(mut self) -> Self {
        self.req.serializable = true;
        self
    }
    /// Returns keys without values.
    pub fn with_keys_only(mut self) -> Self {
        self.req.keys_only = true;
        self
    }
    /// Returns only the count of matching keys.
    pub fn with_count_only(mut self) -> Self {
        self.req.count_only = true;
        self
    }
    /// Keeps keys whose mod revision is ≥ `rev`.
    pub fn with_min_mod_revision(mut self, rev: i64) -> Self {
        self.req.min_mod_revision = rev;
        self
    }
    /// Keeps keys whose mod revision is ≤ `rev`.
    pub fn with_max_mod_revision(mut self, rev: i64) -> Self {
        self.req.max_mod_revision = rev;
        self
    }
    /// Keeps keys whose create revision is ≥ `rev`.
    pub fn with_min_create_revision(mut self, rev: i64) -> Self {
        self.req.min_create_revision = rev;
        self
    }
    /// Keeps keys whose create revision is ≤ `rev`.
    pub fn with_max_create_revision(mut self, rev: i64) -> Self {
        self.req.max_create_revision = rev;
        self
    }

    pub(crate) fn into_request(self, key: Vec<u8>) -> RangeRequest {
        let (key, range_end) = self.range.resolve(key);
        RangeRequest {
            key,
            range_end,
            ..self.req
        }
    }
}

/// Options of [`Client::put`](crate::Client::put).
///
/// ```
/// let opts = kv_client::PutOptions::new().with_lease(7587).with_prev_kv();
/// // Change only the lease, or only the value, of an existing key:
/// let relet = kv_client::PutOptions::new().with_ignore_value().with_lease(7588);
/// let rewrite = kv_client::PutOptions::new().with_ignore_lease();
/// ```
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    req: PutRequest,
}

impl PutOptions {
    /// Default options: no lease, no previous value returned.
    pub fn new() -> Self {
        Self::default()
    }
    /// Attaches the key to this lease.
    pub fn with_lease(mut self, lease: i64) -> Self {
        self.req.lease = lease;
        self
    }
    /// Returns the previous key-value.
    pub fn with_prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }
    /// Keeps the current value (fails with `KeyNotFound` on a new key).
    pub fn with_ignore_value(mut self) -> Self {
        self.req.ignore_value = true;
        self
    }
    /// Keeps the current lease (fails with `KeyNotFound` on a new key).
    pub fn with_ignore_lease(mut self) -> Self {
        self.req.ignore_lease = true;
        self
    }

    pub(crate) fn into_request(self, key: Vec<u8>, value: Vec<u8>) -> PutRequest {
        PutRequest {
            key,
            value,
            ..self.req
        }
    }
}

/// Options of [`Client::delete`](crate::Client::delete).
///
/// ```
/// let opts = kv_client::DeleteOptions::new().with_prefix().with_prev_kv();
/// let tail = kv_client::DeleteOptions::new().with_from_key();
/// let span = kv_client::DeleteOptions::new().with_range("m");
/// ```
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    prev_kv: bool,
    range: KeyRange,
}

impl DeleteOptions {
    /// Default options: delete one key, return nothing but the count.
    pub fn new() -> Self {
        Self::default()
    }
    /// Deletes every key with the given key as prefix.
    pub fn with_prefix(mut self) -> Self {
        self.range = KeyRange::Prefix;
        self
    }
    /// Deletes every key ≥ the given key.
    pub fn with_from_key(mut self) -> Self {
        self.range = KeyRange::FromKey;
        self
    }
    /// Deletes the keys in `[key, end)`.
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = KeyRange::End(end.into());
        self
    }
    /// Returns the deleted key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    pub(crate) fn into_request(self, key: Vec<u8>) -> DeleteRangeRequest {
        let (key, range_end) = self.range.resolve(key);
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_etcd() {
        assert_eq!(
            KeyRange::Prefix.resolve(b"a/".to_vec()),
            (b"a/".to_vec(), b"a0".to_vec())
        );
        assert_eq!(KeyRange::Prefix.resolve(vec![]), (vec![0], vec![0]));
        assert_eq!(
            KeyRange::FromKey.resolve(b"k".to_vec()),
            (b"k".to_vec(), vec![0])
        );
        assert_eq!(
            KeyRange::Single.resolve(b"k".to_vec()),
            (b"k".to_vec(), vec![])
        );
        assert_eq!(prefix_end(&[0xff, 0xff]), vec![0]);
    }

    #[test]
    fn options_build_requests() {
        let r = GetOptions::new()
            .with_prefix()
            .with_limit(3)
            .with_revision(9)
            .with_serializable()
            .into_request(b"p".to_vec());
        assert_eq!((r.key, r.range_end), (b"p".to_vec(), b"q".to_vec()));
        assert_eq!((r.limit, r.revision, r.serializable), (3, 9, true));
        let p = PutOptions::new()
            .with_lease(5)
            .into_request(b"k".to_vec(), b"v".to_vec());
        assert_eq!((p.lease, p.value), (5, b"v".to_vec()));
        let d = DeleteOptions::new()
            .with_range("z")
            .into_request(b"a".to_vec());
        assert_eq!(d.range_end, b"z".to_vec());
    }
}
