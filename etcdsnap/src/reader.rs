//! Bounds-checked bbolt reader: pages are read on demand with positional reads,
//! every id, offset and size taken from the file is checked before use, and a
//! page reached twice in one walk (a cycle or shared child) is an error.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{corrupt, Error, Result};
use crate::page::*;

/// How deep a bucket's tree may be; bbolt trees of any real size stay far below.
const MAX_DEPTH: usize = 64;

/// Where a bucket's tree lives.
#[derive(Debug, Clone)]
pub(crate) enum BucketRoot {
    Page(u64),
    /// An inline bucket: its leaf page stored inside the parent's value.
    Inline(Vec<u8>),
}

/// The bbolt database inside a snapshot file.
pub(crate) struct Db {
    file: File,
    pub page_size: u64,
    pub meta: Meta,
}

impl Db {
    /// Opens `path`, checks the trailer (unless `skip_hash`) and the meta pages.
    pub fn open(path: &Path, skip_hash: bool) -> Result<(Db, Option<[u8; 32]>)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let has_trailer = len % 512 == 32;
        let db_len = if has_trailer { len - 32 } else { len };
        if !has_trailer && !skip_hash {
            return Err(Error::NoTrailer(len));
        }
        let mut trailer = None;
        if has_trailer {
            let mut t = [0u8; 32];
            file.read_exact_at(&mut t, db_len)?;
            if !skip_hash {
                verify_hash(&file, db_len, &t)?;
            }
            trailer = Some(t);
        }
        let meta = pick_meta(&file, db_len)?;
        let page_size = u64::from(meta.page_size);
        let need = meta
            .pgid
            .checked_mul(page_size)
            .ok_or_else(|| Error::BadMeta("page count overflows".into()))?;
        if need > db_len {
            return Err(Error::BadMeta(format!(
                "meta says {} pages of {page_size} bytes, file has {db_len} bytes",
                meta.pgid
            )));
        }
        if meta.root < 2 || meta.root >= meta.pgid {
            return Err(Error::BadMeta(format!(
                "root page {} out of range",
                meta.root
            )));
        }
        Ok((
            Db {
                file,
                page_size,
                meta,
            },
            trailer,
        ))
    }

    /// Reads page `id` with its overflow pages after checking the id and header.
    pub fn page(&self, id: u64) -> Result<Vec<u8>> {
        if id < 2 || id >= self.meta.pgid {
            return Err(corrupt(
                id,
                format!("page id out of range (high water mark {})", self.meta.pgid),
            ));
        }
        let mut first = vec![0u8; self.page_size as usize];
        self.file.read_exact_at(&mut first, id * self.page_size)?;
        let h = header(&first, id)?;
        if h.id != id {
            return Err(corrupt(id, format!("header says page {}", h.id)));
        }
        let span = u64::from(h.overflow) + 1;
        if id.checked_add(span).is_none_or(|end| end > self.meta.pgid) {
            return Err(corrupt(
                id,
                format!("overflow {} runs past the end", h.overflow),
            ));
        }
        if span == 1 {
            return Ok(first);
        }
        let mut buf = vec![0u8; (span * self.page_size) as usize];
        self.file.read_exact_at(&mut buf, id * self.page_size)?;
        Ok(buf)
    }

    /// The top-level buckets: name -> root.
    pub fn buckets(&self) -> Result<BTreeMap<Vec<u8>, BucketRoot>> {
        let mut out = BTreeMap::new();
        for e in Walk::new(self, BucketRoot::Page(self.meta.root)) {
            let e = e?;
            if e.bucket {
                out.insert(e.key, bucket_root(&e.value, self.meta.root)?);
            }
        }
        Ok(out)
    }
}

fn verify_hash(file: &File, db_len: u64, trailer: &[u8; 32]) -> Result<()> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    while off < db_len {
        let n = ((db_len - off) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    let got: [u8; 32] = h.finalize().into();
    if &got != trailer {
        return Err(Error::HashMismatch {
            expected: hex(trailer),
            actual: hex(&got),
        });
    }
    Ok(())
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pick_meta(file: &File, db_len: u64) -> Result<Meta> {
    let read = |off: u64| -> std::result::Result<Vec<u8>, String> {
        let mut b = vec![0u8; 128];
        if off + 128 > db_len {
            return Err(format!(
                "file too small ({db_len} bytes) for a meta page at {off}"
            ));
        }
        file.read_exact_at(&mut b, off).map_err(|e| e.to_string())?;
        Ok(b)
    };
    let check = |m: Meta| -> std::result::Result<Meta, String> {
        let ps = m.page_size;
        if !(512..=65536).contains(&ps) || !ps.is_power_of_two() {
            return Err(format!("bad page size {ps}"));
        }
        Ok(m)
    };
    let m0 = read(0).and_then(|b| parse_meta(&b, 0)).and_then(check);
    let ps1 = m0
        .as_ref()
        .map(|m| u64::from(m.page_size))
        .unwrap_or(PAGE_SIZE as u64);
    let m1 = read(ps1).and_then(|b| parse_meta(&b, 1)).and_then(check);
    match (m0, m1) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(a), Err(b)) => Err(Error::BadMeta(format!("{a}; {b}"))),
    }
}

/// Decodes a bucket value (header + optional inline page).
pub(crate) fn bucket_root(v: &[u8], parent: u64) -> Result<BucketRoot> {
    if v.len() < BUCKET_HEADER {
        return Err(corrupt(parent, "bucket value shorter than its header"));
    }
    let root = u64_at(v, 0);
    if root == 0 {
        Ok(BucketRoot::Inline(v[BUCKET_HEADER..].to_vec()))
    } else {
        Ok(BucketRoot::Page(root))
    }
}

/// One leaf element.
pub(crate) struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The element is a nested bucket (value is its bucket header).
    pub bucket: bool,
}

struct Frame {
    id: u64,
    buf: Vec<u8>,
    leaf: bool,
    count: usize,
    next: usize,
}

/// Depth-first, in-order walk over one bucket's leaf elements.
pub(crate) struct Walk<'a> {
    db: &'a Db,
    stack: Vec<Frame>,
    seen: HashSet<u64>,
    pending: Option<BucketRoot>,
    done: bool,
}

impl<'a> Walk<'a> {
    pub fn new(db: &'a Db, root: BucketRoot) -> Self {
        Walk {
            db,
            stack: Vec::new(),
            seen: HashSet::new(),
            pending: Some(root),
            done: false,
        }
    }

    fn push_page(&mut self, id: u64, buf: Vec<u8>) -> Result<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(corrupt(id, "tree deeper than 64 levels"));
        }
        let h = header(&buf, id)?;
        let leaf = match h.flags {
            LEAF => true,
            BRANCH => false,
            f => {
                return Err(corrupt(
                    id,
                    format!("expected a branch or leaf page, flags {f:#x}"),
                ))
            }
        };
        let count = usize::from(h.count);
        if HEADER + ELEM * count > buf.len() {
            return Err(corrupt(id, format!("{count} elements do not fit the page")));
        }
        self.stack.push(Frame {
            id,
            buf,
            leaf,
            count,
            next: 0,
        });
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        if let Some(root) = self.pending.take() {
            match root {
                BucketRoot::Page(id) => {
                    self.seen.insert(id);
                    let buf = self.db.page(id)?;
                    self.push_page(id, buf)?;
                }
                BucketRoot::Inline(buf) => self.push_page(0, buf)?,
            }
        }
        loop {
            let Some(f) = self.stack.last_mut() else {
                return Ok(None);
            };
            if f.next >= f.count {
                self.stack.pop();
                continue;
            }
            let i = f.next;
            f.next += 1;
            let e = HEADER + ELEM * i;
            if f.leaf {
                let flags = u32_at(&f.buf, e);
                let (k, v) = slices(
                    &f.buf,
                    f.id,
                    e,
                    u32_at(&f.buf, e + 4),
                    u32_at(&f.buf, e + 8),
                    u32_at(&f.buf, e + 12),
                )?;
                return Ok(Some(Entry {
                    key: k.to_vec(),
                    value: v.to_vec(),
                    bucket: flags & BUCKET_LEAF_FLAG != 0,
                }));
            }
            let child = u64_at(&f.buf, e + 8);
            let parent = f.id;
            slices(
                &f.buf,
                parent,
                e,
                u32_at(&f.buf, e),
                u32_at(&f.buf, e + 4),
                0,
            )?;
            if !self.seen.insert(child) {
                return Err(corrupt(parent, format!("child page {child} reached twice")));
            }
            let buf = self.db.page(child)?;
            self.push_page(child, buf)?;
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Key and value of an element at offset `e`, with every bound checked.
fn slices(
    buf: &[u8],
    page: u64,
    e: usize,
    pos: u32,
    ksize: u32,
    vsize: u32,
) -> Result<(&[u8], &[u8])> {
    let start = e.checked_add(pos as usize);
    let kend = start.and_then(|s| s.checked_add(ksize as usize));
    let vend = kend.and_then(|k| k.checked_add(vsize as usize));
    match (start, kend, vend) {
        (Some(s), Some(k), Some(v)) if v <= buf.len() && s >= HEADER => {
            Ok((&buf[s..k], &buf[k..v]))
        }
        _ => Err(corrupt(
            page,
            format!("element at {e} (pos {pos}, key {ksize}, value {vsize}) exceeds the page"),
        )),
    }
}
