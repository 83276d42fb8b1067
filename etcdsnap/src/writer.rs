//! Streaming snapshot writer.
//!
//! Layout: pages 0/1 meta, 2 freelist (empty), then the `key` bucket's leaves
//! in the order rows arrive, then branch pages and the small buckets, then the
//! root bucket page. The meta pages need the root page id and the page count,
//! known only at the end, so every page after the freelist is spooled to a
//! scratch file first (leaf ids are known up front since they start at 3);
//! `finish` writes the meta pages and copies the spool through the SHA-256.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::page::{empty_freelist, meta_page, Meta, BUCKET_LEAF_FLAG, PAGE_SIZE};
use crate::schema::*;
use crate::tree::{LevelBuilder, PageSink};

const FIRST_DATA_PAGE: u64 = 3;

/// Writes an etcd v3 snapshot (bbolt file + SHA-256 trailer) to any [`Write`].
///
/// Feed rows in strictly increasing revision order with [`push_row`](Self::push_row),
/// add leases, members, meta and any raw records, then call [`finish`](Self::finish).
pub struct SnapshotWriter<W: Write> {
    out: W,
    sink: PageSink<BufWriter<File>>,
    keys: LevelBuilder,
    last: Option<Revision>,
    rows: u64,
    small: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl<W: Write> SnapshotWriter<W> {
    /// A writer spooling pages to an anonymous temporary file.
    pub fn new(out: W) -> Result<Self> {
        Self::with_scratch(out, tempfile::tempfile()?)
    }

    /// A writer spooling pages to `scratch` (must be empty, readable and writable).
    pub fn with_scratch(out: W, scratch: File) -> Result<Self> {
        let mut small = BTreeMap::new();
        for b in ALL_BUCKETS {
            if b != BUCKET_KEY {
                small.insert(b.to_vec(), BTreeMap::new());
            }
        }
        Ok(SnapshotWriter {
            out,
            sink: PageSink {
                out: BufWriter::new(scratch),
                next_id: FIRST_DATA_PAGE,
            },
            keys: LevelBuilder::leaf(),
            last: None,
            rows: 0,
            small,
        })
    }

    /// Appends one MVCC row. Revisions must strictly increase (etcd's key
    /// bucket is ordered by revision and a revision holds one change).
    pub fn push_row(&mut self, row: &Row) -> Result<()> {
        if row.rev.main < 0 || row.rev.sub < 0 {
            return Err(Error::Order(format!("negative revision {:?}", row.rev)));
        }
        if let Some(last) = self.last {
            if row.rev <= last {
                return Err(Error::Order(format!(
                    "revision {:?} after {:?}",
                    row.rev, last
                )));
            }
        }
        self.last = Some(row.rev);
        self.rows += 1;
        let key = row.rev.to_key(row.tombstone);
        self.keys
            .push(&mut self.sink, 0, key, row.kv.encode_to_vec())
    }

    /// Stores a lease (key: the id as 8 big-endian bytes, as etcd does).
    pub fn put_lease(&mut self, lease: &Lease) {
        self.put_raw(
            BUCKET_LEASE,
            lease.id.to_be_bytes().to_vec(),
            lease.encode_to_vec(),
        );
    }

    /// Stores a cluster member.
    pub fn put_member(&mut self, m: &Member) -> Result<()> {
        let v = serde_json::to_vec(m).map_err(|e| Error::Order(format!("member json: {e}")))?;
        self.put_raw(BUCKET_MEMBERS, m.key(), v);
        Ok(())
    }

    /// Records a removed member id (`members_removed`), so it can never rejoin.
    pub fn put_removed_member(&mut self, id: u64) {
        self.put_raw(
            BUCKET_MEMBERS_REMOVED,
            format!("{id:x}").into_bytes(),
            REMOVED.to_vec(),
        );
    }

    /// Stores the `auth` bucket's records.
    pub fn set_auth(&mut self, a: &AuthInfo) {
        self.put_raw(
            BUCKET_AUTH,
            AUTH_ENABLED.to_vec(),
            vec![u8::from(a.enabled)],
        );
        self.put_raw(
            BUCKET_AUTH,
            AUTH_REVISION.to_vec(),
            a.revision.to_be_bytes().to_vec(),
        );
    }

    /// Stores a user (`authUsers`, keyed by name).
    pub fn put_user(&mut self, u: &kv_proto::authpb::User) {
        self.put_raw(BUCKET_AUTH_USERS, u.name.clone(), u.encode_to_vec());
    }

    /// Stores a role (`authRoles`, keyed by name).
    pub fn put_role(&mut self, r: &kv_proto::authpb::Role) {
        self.put_raw(BUCKET_AUTH_ROLES, r.name.clone(), r.encode_to_vec());
    }

    /// Stores the `meta` bucket's records (absent options are not written).
    pub fn set_meta(&mut self, m: &MetaInfo) -> Result<()> {
        self.put_raw(
            BUCKET_META,
            META_CONSISTENT_INDEX.to_vec(),
            m.consistent_index.to_be_bytes().to_vec(),
        );
        if let Some(t) = m.term {
            self.put_raw(BUCKET_META, META_TERM.to_vec(), t.to_be_bytes().to_vec());
        }
        if let Some(r) = m.scheduled_compact_rev {
            self.put_raw(
                BUCKET_META,
                META_SCHEDULED_COMPACT.to_vec(),
                Revision { main: r, sub: 0 }.to_key(false),
            );
        }
        if let Some(r) = m.finished_compact_rev {
            self.put_raw(
                BUCKET_META,
                META_FINISHED_COMPACT.to_vec(),
                Revision { main: r, sub: 0 }.to_key(false),
            );
        }
        if let Some(cs) = &m.conf_state {
            let v =
                serde_json::to_vec(cs).map_err(|e| Error::Order(format!("confState json: {e}")))?;
            self.put_raw(BUCKET_META, META_CONF_STATE.to_vec(), v);
        }
        Ok(())
    }

    /// Stores any record in a bucket other than `key` (auth users/roles, alarms,
    /// `cluster/clusterVersion`, ...). Creates the bucket if it is not one of etcd's.
    /// Records for `key` go through [`push_row`](Self::push_row) instead.
    pub fn put_raw(&mut self, bucket: &[u8], key: Vec<u8>, value: Vec<u8>) {
        self.small
            .entry(bucket.to_vec())
            .or_default()
            .insert(key, value);
    }

    /// Writes the whole database and its SHA-256 trailer; returns the output and the
    /// database size in bytes (without the 32-byte trailer).
    pub fn finish(mut self) -> Result<(W, u64)> {
        if self.small.contains_key(BUCKET_KEY) {
            return Err(Error::Order(
                "records for bucket \"key\" must be rows".into(),
            ));
        }
        let mut roots: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        roots.insert(BUCKET_KEY.to_vec(), self.keys.finish(&mut self.sink)?);
        for (name, records) in std::mem::take(&mut self.small) {
            let mut b = LevelBuilder::leaf();
            for (k, v) in records {
                b.push(&mut self.sink, 0, k, v)?;
            }
            roots.insert(name, b.finish(&mut self.sink)?);
        }
        // The root bucket: one element per bucket, value = bucket header (root, sequence 0).
        let mut top = LevelBuilder::leaf();
        for (name, root) in roots {
            let mut hdr = root.to_le_bytes().to_vec();
            hdr.extend_from_slice(&0u64.to_le_bytes());
            top.push(&mut self.sink, u64::from(BUCKET_LEAF_FLAG), name, hdr)?;
        }
        let root = top.finish(&mut self.sink)?;
        let pgid = self.sink.next_id;
        let mut scratch = self
            .sink
            .out
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()))?;
        scratch.seek(SeekFrom::Start(0))?;

        let meta = Meta {
            page_size: PAGE_SIZE as u32,
            root,
            root_sequence: 0,
            freelist: 2,
            pgid,
            txid: 0,
        };
        let mut out = HashingWriter {
            inner: &mut self.out,
            hash: Sha256::new(),
            n: 0,
        };
        out.write_all(&meta_page(0, &meta))?;
        out.write_all(&meta_page(1, &Meta { txid: 1, ..meta }))?;
        out.write_all(&empty_freelist(2))?;
        let copied = io::copy(
            &mut (&mut scratch).take((pgid - FIRST_DATA_PAGE) * PAGE_SIZE as u64),
            &mut out,
        )?;
        if copied != (pgid - FIRST_DATA_PAGE) * PAGE_SIZE as u64 {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "scratch file shorter than written",
            )));
        }
        let n = out.n;
        let digest = out.hash.finalize();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        tracing::debug!(rows = self.rows, pages = pgid, "etcd snapshot written");
        Ok((self.out, n))
    }
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha256,
    n: u64,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hash.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
