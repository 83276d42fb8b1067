//! The public reader: [`Snapshot`].

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::reader::{hex, BucketRoot, Db, Walk};
use crate::schema::*;

/// Options for [`Snapshot::open_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Do not verify the SHA-256 trailer, and accept a bare bbolt file without
    /// one (like `etcdutl snapshot restore --skip-hash-check`, e.g. for a copied `member/snap/db`).
    pub skip_hash_check: bool,
}

/// An etcd v3 snapshot opened for reading.
pub struct Snapshot {
    db: Db,
    trailer: Option<[u8; 32]>,
    buckets: BTreeMap<Vec<u8>, BucketRoot>,
}

impl Snapshot {
    /// Opens a snapshot and verifies its SHA-256 trailer.
    pub fn open(path: impl AsRef<Path>) -> Result<Snapshot> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens a snapshot with options.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Snapshot> {
        let (db, trailer) = Db::open(path.as_ref(), opts.skip_hash_check)?;
        let buckets = db.buckets()?;
        Ok(Snapshot {
            db,
            trailer,
            buckets,
        })
    }

    /// The SHA-256 trailer in hex, if the file has one.
    pub fn sha256(&self) -> Option<String> {
        self.trailer.map(|t| hex(&t))
    }

    /// Size of the bbolt database in bytes (pages in use times page size), as `etcdctl snapshot status` reports it.
    pub fn db_size(&self) -> u64 {
        self.db.meta.pgid * self.db.page_size
    }

    /// Names of the top-level buckets, in bbolt's (byte) order.
    pub fn bucket_names(&self) -> impl Iterator<Item = &[u8]> {
        self.buckets.keys().map(Vec::as_slice)
    }

    /// Raw (key, value) records of a top-level bucket, in key order. Nested
    /// buckets (etcd has none) come back with their 16-byte header as value.
    pub fn records(&self, bucket: &[u8]) -> Result<Records<'_>> {
        let root = self
            .buckets
            .get(bucket)
            .ok_or_else(|| Error::MissingBucket(String::from_utf8_lossy(bucket).into_owned()))?;
        Ok(Records {
            walk: Walk::new(&self.db, root.clone()),
        })
    }

    /// The MVCC rows of the `key` bucket, in revision order.
    pub fn rows(&self) -> Result<impl Iterator<Item = Result<Row>> + '_> {
        Ok(self.records(BUCKET_KEY)?.map(|r| {
            let (k, v) = r?;
            let bad = |reason: String| Error::BadRecord {
                bucket: "key".into(),
                reason,
            };
            let (rev, tombstone) = Revision::from_key(&k)
                .ok_or_else(|| bad(format!("bad revision key {}", hex(&k))))?;
            let kv = kv_proto::mvccpb::KeyValue::decode(v.as_slice())
                .map_err(|e| bad(format!("KeyValue at {rev:?}: {e}")))?;
            Ok(Row { rev, tombstone, kv })
        }))
    }

    /// The leases, by id; empty if the bucket is absent.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        self.decode_all(BUCKET_LEASE, |v| {
            Lease::decode(v).map_err(|e| e.to_string())
        })
    }

    /// The members (`members` bucket); empty if the bucket is absent.
    pub fn members(&self) -> Result<Vec<Member>> {
        self.decode_all(BUCKET_MEMBERS, |v| {
            serde_json::from_slice(v).map_err(|e| e.to_string())
        })
    }

    /// Decodes every record of an optional bucket with `f`; empty if the bucket is absent.
    fn decode_all<T>(
        &self,
        bucket: &[u8],
        f: impl Fn(&[u8]) -> std::result::Result<T, String>,
    ) -> Result<Vec<T>> {
        if !self.buckets.contains_key(bucket) {
            return Ok(Vec::new());
        }
        let name = String::from_utf8_lossy(bucket).into_owned();
        self.records(bucket)?
            .map(|r| {
                let (_, v) = r?;
                f(&v).map_err(|reason| Error::BadRecord {
                    bucket: name.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// Users (`authUsers`), by name.
    pub fn users(&self) -> Result<Vec<kv_proto::authpb::User>> {
        self.decode_all(BUCKET_AUTH_USERS, |v| {
            kv_proto::authpb::User::decode(v).map_err(|e| e.to_string())
        })
    }

    /// Roles (`authRoles`), by name.
    pub fn roles(&self) -> Result<Vec<kv_proto::authpb::Role>> {
        self.decode_all(BUCKET_AUTH_ROLES, |v| {
            kv_proto::authpb::Role::decode(v).map_err(|e| e.to_string())
        })
    }

    /// Ids in `members_removed`.
    pub fn removed_members(&self) -> Result<Vec<u64>> {
        if !self.buckets.contains_key(BUCKET_MEMBERS_REMOVED) {
            return Ok(Vec::new());
        }
        self.records(BUCKET_MEMBERS_REMOVED)?
            .map(|r| {
                let (k, _) = r?;
                std::str::from_utf8(&k)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| Error::BadRecord {
                        bucket: "members_removed".into(),
                        reason: format!("bad id {k:?}"),
                    })
            })
            .collect()
    }

    /// The `auth` bucket; defaults (off, revision 0) when absent.
    pub fn auth(&self) -> Result<AuthInfo> {
        let mut a = AuthInfo::default();
        if !self.buckets.contains_key(BUCKET_AUTH) {
            return Ok(a);
        }
        for r in self.records(BUCKET_AUTH)? {
            let (k, v) = r?;
            match k.as_slice() {
                AUTH_ENABLED => a.enabled = v.first() == Some(&1),
                AUTH_REVISION => {
                    let b: [u8; 8] = v.as_slice().try_into().map_err(|_| Error::BadRecord {
                        bucket: "auth".into(),
                        reason: format!("authRevision is {} bytes", v.len()),
                    })?;
                    a.revision = u64::from_be_bytes(b);
                }
                _ => {}
            }
        }
        Ok(a)
    }

    /// The `meta` bucket decoded.
    pub fn meta(&self) -> Result<MetaInfo> {
        let mut m = MetaInfo::default();
        let bad = |reason: String| Error::BadRecord {
            bucket: "meta".into(),
            reason,
        };
        let u64_of = |k: &[u8], v: &[u8]| -> Result<u64> {
            let a: [u8; 8] = v.try_into().map_err(|_| {
                bad(format!(
                    "{} is {} bytes",
                    String::from_utf8_lossy(k),
                    v.len()
                ))
            })?;
            Ok(u64::from_be_bytes(a))
        };
        let rev_of = |k: &[u8], v: &[u8]| -> Result<i64> {
            Revision::from_key(v)
                .map(|(r, _)| r.main)
                .ok_or_else(|| bad(format!("{} is not a revision", String::from_utf8_lossy(k))))
        };
        for r in self.records(BUCKET_META)? {
            let (k, v) = r?;
            match k.as_slice() {
                META_CONSISTENT_INDEX => m.consistent_index = u64_of(&k, &v)?,
                META_TERM => m.term = Some(u64_of(&k, &v)?),
                META_SCHEDULED_COMPACT => m.scheduled_compact_rev = Some(rev_of(&k, &v)?),
                META_FINISHED_COMPACT => m.finished_compact_rev = Some(rev_of(&k, &v)?),
                META_CONF_STATE => {
                    m.conf_state = Some(
                        serde_json::from_slice(&v).map_err(|e| bad(format!("confState: {e}")))?,
                    )
                }
                _ => {}
            }
        }
        Ok(m)
    }
}

/// Iterator over a bucket's raw records.
pub struct Records<'a> {
    walk: Walk<'a>,
}

impl Iterator for Records<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.walk.next().map(|r| r.map(|e| (e.key, e.value)))
    }
}
