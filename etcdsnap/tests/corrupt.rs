//! Corrupt snapshots: truncated, bit-flipped, bad page ids and offsets. Every
//! case must give a typed error (or, for flips that hit padding, a clean
//! read) and never panic or hang.

use std::path::{Path, PathBuf};

use kv_etcdsnap::*;
use kv_proto::mvccpb::KeyValue;

const PS: usize = PAGE_SIZE;

fn write(path: &Path, n: i64) {
    let mut w = SnapshotWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for i in 0..n {
        let kv = KeyValue {
            key: format!("key/{i:04}").into(),
            create_revision: 2 + i,
            mod_revision: 2 + i,
            version: 1,
            value: vec![b'x'; 40],
            lease: 0,
        };
        w.push_row(&Row {
            rev: Revision {
                main: 2 + i,
                sub: 0,
            },
            tombstone: false,
            kv,
        })
        .unwrap();
    }
    w.put_lease(&Lease {
        id: 7,
        ttl: 60,
        remaining_ttl: 0,
    });
    w.set_meta(&MetaInfo {
        consistent_index: 3,
        ..Default::default()
    })
    .unwrap();
    w.finish().unwrap();
}

/// Reads everything the API offers; returns the first error.
fn read_all(path: &Path, skip: bool) -> Result<()> {
    let s = Snapshot::open_with(
        path,
        OpenOptions {
            skip_hash_check: skip,
        },
    )?;
    for r in s.rows()? {
        r?;
    }
    s.leases()?;
    s.meta()?;
    s.members()?;
    s.status()?;
    Ok(())
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    bytes: Vec<u8>,
}

fn fixture(n: i64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    write(&path, n);
    let bytes = std::fs::read(&path).unwrap();
    read_all(&path, false).unwrap();
    Fixture {
        _dir: dir,
        path,
        bytes,
    }
}

impl Fixture {
    fn with(&self, f: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let mut b = self.bytes.clone();
        f(&mut b);
        std::fs::write(&self.path, &b).unwrap();
        read_all(&self.path, true)
    }
    fn db_len(&self) -> usize {
        self.bytes.len() - 32
    }
    /// Ids of pages whose header has the given flags.
    fn pages_with(&self, flags: u16) -> Vec<usize> {
        (2..self.db_len() / PS)
            .filter(|&i| {
                u16::from_le_bytes([self.bytes[i * PS + 8], self.bytes[i * PS + 9]]) == flags
            })
            .collect()
    }
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn truncated_files_are_refused() {
    let fx = fixture(300);
    let len = fx.bytes.len();
    for cut in [
        0,
        1,
        31,
        32,
        100,
        PS,
        PS + 32,
        2 * PS,
        len / 2,
        len - 33,
        len - 32,
        len - 1,
    ] {
        std::fs::write(&fx.path, &fx.bytes[..cut]).unwrap();
        let strict = read_all(&fx.path, false);
        assert!(strict.is_err(), "cut at {cut} accepted");
        // Without the hash check, a cut that removes pages must still be caught.
        if cut < len - 32 {
            assert!(
                read_all(&fx.path, true).is_err(),
                "cut at {cut} accepted with skip_hash_check"
            );
        }
    }
    std::fs::write(&fx.path, &fx.bytes[..len - 1]).unwrap();
    assert!(matches!(
        read_all(&fx.path, false),
        Err(Error::NoTrailer(_))
    ));
}

#[test]
fn flipped_bit_fails_the_hash() {
    let fx = fixture(300);
    let mut b = fx.bytes.clone();
    b[5 * PS + 100] ^= 0x10;
    std::fs::write(&fx.path, &b).unwrap();
    assert!(matches!(
        read_all(&fx.path, false),
        Err(Error::HashMismatch { .. })
    ));
}

#[test]
fn flipped_bits_without_hash_check_never_panic() {
    let fx = fixture(300);
    let (mut ok, mut err) = (0, 0);
    // Every byte of the page headers and element tables of all pages, plus a stride through the rest.
    let mut offsets: Vec<usize> = (0..fx.db_len() / PS)
        .flat_map(|p| (p * PS..p * PS + 160).collect::<Vec<_>>())
        .collect();
    offsets.extend((0..fx.db_len()).step_by(61));
    for off in offsets {
        for bit in [0x01u8, 0x80] {
            match fx.with(|b| b[off] ^= bit) {
                Ok(()) => ok += 1,
                Err(_) => err += 1,
            }
        }
    }
    println!("bit flips: {ok} read cleanly (padding, values), {err} refused with an error");
    assert!(err > 0 && ok > 0);
}

#[test]
fn bad_page_ids_and_offsets_are_typed_errors() {
    let fx = fixture(300);
    let branch = fx.pages_with(1);
    assert_eq!(branch.len(), 1, "300 rows make one branch page");
    let bp = branch[0] * PS;
    let leaf = 3 * PS;

    // Child pointer past the high-water mark.
    let e = fx.with(|b| put_u64(b, bp + 16 + 8, 1 << 40)).unwrap_err();
    assert!(
        matches!(e, Error::CorruptPage { page, .. } if page == 1 << 40),
        "{e}"
    );
    // Child pointing at the branch itself: a cycle.
    let e = fx
        .with(|b| put_u64(b, bp + 16 + 8, branch[0] as u64))
        .unwrap_err();
    assert!(
        matches!(e, Error::CorruptPage { ref reason, .. } if reason.contains("reached twice")),
        "{e}"
    );
    // Child pointing at a meta page.
    assert!(matches!(
        fx.with(|b| put_u64(b, bp + 16 + 8, 0)),
        Err(Error::CorruptPage { .. })
    ));
    // Leaf element offset and sizes beyond the page.
    assert!(matches!(
        fx.with(|b| put_u32(b, leaf + 16 + 4, u32::MAX)),
        Err(Error::CorruptPage { .. })
    ));
    assert!(matches!(
        fx.with(|b| put_u32(b, leaf + 16 + 12, 1 << 30)),
        Err(Error::CorruptPage { .. })
    ));
    // Element count larger than the page.
    assert!(matches!(
        fx.with(|b| b[leaf + 10..leaf + 12].copy_from_slice(&u16::MAX.to_le_bytes())),
        Err(Error::CorruptPage { .. })
    ));
    // Overflow running past the end.
    assert!(matches!(
        fx.with(|b| put_u32(b, leaf + 12, u32::MAX)),
        Err(Error::CorruptPage { .. })
    ));
    // Header id that does not match the page's position.
    assert!(matches!(
        fx.with(|b| put_u64(b, leaf, 4)),
        Err(Error::CorruptPage { .. })
    ));
    // A leaf turned into a meta page.
    assert!(matches!(
        fx.with(|b| b[leaf + 8] = 0x04),
        Err(Error::CorruptPage { .. })
    ));
    // Both meta pages bad: typed BadMeta.
    let e = fx
        .with(|b| {
            b[16] ^= 1;
            b[PS + 16] ^= 1;
        })
        .unwrap_err();
    assert!(matches!(e, Error::BadMeta(_)), "{e}");
    // A valid (re-checksummed) meta whose page count exceeds the file.
    let e = fx.with(|b| set_meta_u64(b, 40, 1 << 50)).unwrap_err();
    assert!(matches!(e, Error::BadMeta(_)), "{e}");
    // A valid meta whose root is out of range.
    let e = fx.with(|b| set_meta_u64(b, 16, 1 << 20)).unwrap_err();
    assert!(matches!(e, Error::BadMeta(_)), "{e}");
}

/// Writes a u64 field of both meta pages at `field` (offset in the meta body) and fixes the checksums.
fn set_meta_u64(b: &mut [u8], field: usize, v: u64) {
    for p in [0, PS] {
        let body = p + 16;
        put_u64(b, body + field, v);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for x in &b[body..body + 56] {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        put_u64(b, body + 56, h);
    }
}

#[test]
fn writer_rejects_out_of_order_rows() {
    let mut w = SnapshotWriter::new(Vec::new()).unwrap();
    let row = |main, sub| Row {
        rev: Revision { main, sub },
        tombstone: false,
        kv: KeyValue::default(),
    };
    w.push_row(&row(5, 1)).unwrap();
    assert!(matches!(w.push_row(&row(5, 1)), Err(Error::Order(_))));
    assert!(matches!(w.push_row(&row(5, 0)), Err(Error::Order(_))));
    assert!(matches!(w.push_row(&row(-1, 0)), Err(Error::Order(_))));
    w.push_row(&row(6, 0)).unwrap();
    let (out, n) = w.finish().unwrap();
    assert_eq!(out.len() as u64, n + 32);
}
