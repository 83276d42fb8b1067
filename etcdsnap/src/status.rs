//! `etcdctl snapshot status`: hash, revision, total keys, total size.

use std::collections::HashSet;

use kv_proto::mvccpb::KeyValue;
use prost::Message;

use crate::error::{Error, Result};
use crate::schema::{Revision, BUCKET_KEY, BUCKET_META};
use crate::snapshot::Snapshot;

/// What `etcdctl snapshot status` prints (`-w json` field names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over every bucket name, key and value in bbolt order (`hash`).
    pub hash: u32,
    /// Main revision of the last row in the `key` bucket (`revision`).
    pub revision: i64,
    /// Number of records across all buckets: `totalKey` as etcdctl 3.4/3.5 print it.
    pub total_key: u64,
    /// Keys live after the last revision: `totalKey` as etcdutl 3.6+ prints it.
    pub live_keys: u64,
    /// `meta/storageVersion` (etcd 3.6+ `version`), absent in older snapshots.
    pub version: Option<String>,
    /// Database size in bytes (`totalSize`).
    pub total_size: u64,
}

impl Snapshot {
    /// Computes the status as etcd does: one CRC-32C (Castagnoli) over each
    /// bucket's name followed by its keys and values; both etcd's meanings of
    /// "total keys" (3.4/3.5: records, 3.6+: live keys).
    pub fn status(&self) -> Result<Status> {
        let mut h = Crc32c::new();
        let mut st = Status {
            hash: 0,
            revision: 0,
            total_key: 0,
            live_keys: 0,
            version: None,
            total_size: self.db_size(),
        };
        let mut live: HashSet<Vec<u8>> = HashSet::new();
        let names: Vec<Vec<u8>> = self.bucket_names().map(<[u8]>::to_vec).collect();
        for name in names {
            h.update(&name);
            let is_key = name == BUCKET_KEY;
            for r in self.records(&name)? {
                let (k, v) = r?;
                h.update(&k);
                h.update(&v);
                if is_key {
                    let bad = |reason: String| Error::BadRecord {
                        bucket: "key".into(),
                        reason,
                    };
                    let (rev, tomb) = Revision::from_key(&k)
                        .ok_or_else(|| bad(format!("bad revision key {k:?}")))?;
                    st.revision = rev.main;
                    let kv = KeyValue::decode(v.as_slice())
                        .map_err(|e| bad(format!("KeyValue at {rev:?}: {e}")))?;
                    if tomb {
                        live.remove(&kv.key);
                    } else {
                        live.insert(kv.key);
                    }
                } else if name == BUCKET_META && k == b"storageVersion" {
                    st.version = Some(String::from_utf8_lossy(&v).into_owned());
                }
                st.total_key += 1;
            }
        }
        st.hash = h.finish();
        st.live_keys = live.len() as u64;
        Ok(st)
    }
}

/// Table-driven CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Go's `crc32.Castagnoli`.
struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Crc32c {
    fn new() -> Self {
        let mut table = [0u32; 256];
        for (i, t) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *t = c;
        }
        Crc32c { table, crc: !0 }
    }
    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.crc = self.table[((self.crc ^ u32::from(*b)) & 0xff) as usize] ^ (self.crc >> 8);
        }
    }
    fn finish(&self) -> u32 {
        !self.crc
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_check_value() {
        let mut c = super::Crc32c::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xE306_9283);
    }
}
