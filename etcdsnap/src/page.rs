//! bbolt's on-disk page format (little-endian, as bbolt writes it on amd64/arm64).
//!
//! Every page starts with a 16-byte header: id u64, flags u16, count u16,
//! overflow u32. Leaf elements are 16 bytes (flags, pos, ksize, vsize: u32);
//! branch elements are 16 bytes (pos, ksize: u32, child pgid: u64); `pos` is
//! relative to the element's own offset. A bucket value is a 16-byte header
//! (root pgid, sequence) followed, when root is 0, by an inline leaf page.

use crate::error::{corrupt, Result};

/// The only page size this crate writes; the reader takes it from the meta page.
pub const PAGE_SIZE: usize = 4096;
pub(crate) const HEADER: usize = 16;
pub(crate) const ELEM: usize = 16;
pub(crate) const BUCKET_HEADER: usize = 16;

pub(crate) const BRANCH: u16 = 0x01;
pub(crate) const LEAF: u16 = 0x02;
pub(crate) const META: u16 = 0x04;
pub(crate) const FREELIST: u16 = 0x10;
pub(crate) const BUCKET_LEAF_FLAG: u32 = 0x01;

pub(crate) const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;
const META_LEN: usize = 64;

/// Page header fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

pub(crate) fn put_header(buf: &mut [u8], h: Header) {
    buf[0..8].copy_from_slice(&h.id.to_le_bytes());
    buf[8..10].copy_from_slice(&h.flags.to_le_bytes());
    buf[10..12].copy_from_slice(&h.count.to_le_bytes());
    buf[12..16].copy_from_slice(&h.overflow.to_le_bytes());
}

/// Reads a header; `buf` must be at least 16 bytes (checked).
pub(crate) fn header(buf: &[u8], page: u64) -> Result<Header> {
    if buf.len() < HEADER {
        return Err(corrupt(page, "page shorter than its header"));
    }
    Ok(Header {
        id: u64_at(buf, 0),
        flags: u16_at(buf, 8),
        count: u16_at(buf, 10),
        overflow: u32_at(buf, 12),
    })
}

pub(crate) fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub(crate) fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}
pub(crate) fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// bbolt's meta page body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub page_size: u32,
    pub root: u64,
    pub root_sequence: u64,
    pub freelist: u64,
    /// High-water mark: number of pages in the file.
    pub pgid: u64,
    pub txid: u64,
}

/// FNV-1a 64, bbolt's meta checksum.
pub(crate) fn fnv64a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A full meta page (`id` 0 or 1).
pub(crate) fn meta_page(id: u64, m: &Meta) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    put_header(
        &mut p,
        Header {
            id,
            flags: META,
            count: 0,
            overflow: 0,
        },
    );
    let b = &mut p[HEADER..HEADER + META_LEN];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..12].copy_from_slice(&m.page_size.to_le_bytes());
    // b[12..16]: flags, always 0.
    b[16..24].copy_from_slice(&m.root.to_le_bytes());
    b[24..32].copy_from_slice(&m.root_sequence.to_le_bytes());
    b[32..40].copy_from_slice(&m.freelist.to_le_bytes());
    b[40..48].copy_from_slice(&m.pgid.to_le_bytes());
    b[48..56].copy_from_slice(&m.txid.to_le_bytes());
    let sum = fnv64a(&b[0..56]);
    b[56..64].copy_from_slice(&sum.to_le_bytes());
    p
}

/// Parses and validates a meta page found at byte offset `page * ?` (caller reads it).
pub(crate) fn parse_meta(buf: &[u8], page: u64) -> std::result::Result<Meta, String> {
    if buf.len() < HEADER + META_LEN {
        return Err(format!("meta page {page} truncated"));
    }
    let h = header(buf, page).map_err(|e| e.to_string())?;
    if h.flags & META == 0 {
        return Err(format!(
            "page {page} is not a meta page (flags {:#x})",
            h.flags
        ));
    }
    let b = &buf[HEADER..HEADER + META_LEN];
    if u32_at(b, 0) != MAGIC {
        return Err(format!("meta page {page}: bad magic"));
    }
    if u32_at(b, 4) != VERSION {
        return Err(format!(
            "meta page {page}: unsupported version {}",
            u32_at(b, 4)
        ));
    }
    if fnv64a(&b[0..56]) != u64_at(b, 56) {
        return Err(format!("meta page {page}: checksum mismatch"));
    }
    Ok(Meta {
        page_size: u32_at(b, 8),
        root: u64_at(b, 16),
        root_sequence: u64_at(b, 24),
        freelist: u64_at(b, 32),
        pgid: u64_at(b, 40),
        txid: u64_at(b, 48),
    })
}

/// An empty freelist page.
pub(crate) fn empty_freelist(id: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_SIZE];
    put_header(
        &mut p,
        Header {
            id,
            flags: FREELIST,
            count: 0,
            overflow: 0,
        },
    );
    p
}

/// Builds leaf (bucket_flags per element) or branch pages from sorted elements.
/// `elems`: (flags or child pgid, key, value) — value empty for branches.
pub(crate) fn encode_page(id: u64, flags: u16, elems: &[(u64, &[u8], &[u8])]) -> Vec<u8> {
    let data: usize = elems.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    let size = HEADER + ELEM * elems.len() + data;
    let pages = size.div_ceil(PAGE_SIZE).max(1);
    let mut p = vec![0u8; pages * PAGE_SIZE];
    // count fits u16: callers never pack more than a page's worth of 16-byte elements
    // unless they overflow, which the caller bounds (see tree::MAX_ELEMS).
    put_header(
        &mut p,
        Header {
            id,
            flags,
            count: elems.len() as u16,
            overflow: (pages - 1) as u32,
        },
    );
    let mut off = HEADER + ELEM * elems.len();
    for (i, (x, k, v)) in elems.iter().enumerate() {
        let e = HEADER + ELEM * i;
        let pos = (off - e) as u32;
        if flags == LEAF {
            p[e..e + 4].copy_from_slice(&(*x as u32).to_le_bytes());
            p[e + 4..e + 8].copy_from_slice(&pos.to_le_bytes());
            p[e + 8..e + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            p[e + 12..e + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            p[e..e + 4].copy_from_slice(&pos.to_le_bytes());
            p[e + 4..e + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
            p[e + 8..e + 16].copy_from_slice(&x.to_le_bytes());
        }
        p[off..off + k.len()].copy_from_slice(k);
        off += k.len();
        p[off..off + v.len()].copy_from_slice(v);
        off += v.len();
    }
    p
}

/// Encoded size of a page holding elements with `data` key+value bytes.
pub(crate) fn page_bytes(n: usize, data: usize) -> usize {
    HEADER + ELEM * n + data
}
