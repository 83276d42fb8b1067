//! Read and write etcd v3 snapshot files.
//!
//! An etcd v3 snapshot (what `etcdctl snapshot save` writes and `etcdutl
//! snapshot restore` reads) is a bbolt database holding etcd's buckets
//! (`key`, `meta`, `lease`, `auth*`, `members*`, `cluster`, `alarm`) followed
//! by a 32-byte SHA-256 of the database bytes. This crate implements the
//! subset of bbolt's page format those files use (4096-byte pages, meta and
//! freelist pages, branch/leaf pages with overflow, inline buckets on read),
//! without bbolt itself:
//!
//! - [`SnapshotWriter`] writes a snapshot to any [`std::io::Write`] from rows fed
//!   in revision order, plus leases, members, auth records and meta. The `key`
//!   bucket's pages are spooled to a scratch file (bbolt's meta pages, first in
//!   the file, name the root page and page count, known only at the end), so
//!   memory stays at a few MB whatever the row count; the output is written by
//!   [`SnapshotWriter::finish`]. The other buckets are kept in memory until then.
//! - [`Snapshot`] opens a file, verifies the trailer, and iterates rows,
//!   leases, members, users, roles, auth and meta; [`Snapshot::status`] gives
//!   what `etcdctl snapshot status` (3.4) and `etcdutl snapshot status` (3.6+)
//!   print. Every id, offset and size read from the
//!   file is checked: a corrupt file yields an [`Error`], never a panic.
//!
//! ```
//! use kv_etcdsnap::{MetaInfo, Revision, Row, Snapshot, SnapshotWriter};
//! use kv_proto::mvccpb::KeyValue;
//!
//! # fn main() -> Result<(), kv_etcdsnap::Error> {
//! let path = std::env::temp_dir().join(format!("etcdsnap-doc-{}.db", std::process::id()));
//! let mut w = SnapshotWriter::new(std::fs::File::create(&path)?)?;
//! let kv = KeyValue { key: b"foo".to_vec(), create_revision: 2, mod_revision: 2, version: 1, value: b"bar".to_vec(), lease: 0 };
//! w.push_row(&Row { rev: Revision { main: 2, sub: 0 }, tombstone: false, kv })?;
//! w.set_meta(&MetaInfo { consistent_index: 5, term: Some(2), ..Default::default() })?;
//! w.finish()?;
//!
//! let snap = Snapshot::open(&path)?;
//! let rows: Vec<Row> = snap.rows()?.collect::<Result<_, _>>()?;
//! assert_eq!(rows[0].kv.value, b"bar");
//! assert_eq!(snap.status()?.revision, 2);
//! # std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```

mod error;
mod page;
mod reader;
mod schema;
mod snapshot;
mod status;
mod tree;
mod writer;

pub use error::{Error, Result};
pub use page::PAGE_SIZE;
pub use schema::*;
pub use snapshot::{OpenOptions, Records, Snapshot};
pub use status::Status;
pub use writer::SnapshotWriter;
