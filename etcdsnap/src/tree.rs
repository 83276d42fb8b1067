//! Bottom-up B+tree building: sorted elements are packed into leaf pages as
//! they arrive and written out at once; only each page's first key and id are
//! kept (for the branch levels), so memory stays at one page plus ~(key+8)
//! bytes per leaf page.

use std::io::Write;

use crate::error::Result;
use crate::page::{encode_page, page_bytes, BRANCH, LEAF, PAGE_SIZE};

/// Appends pages to an output and hands out their page ids in file order.
pub(crate) struct PageSink<W: Write> {
    pub out: W,
    pub next_id: u64,
}

impl<W: Write> PageSink<W> {
    fn write(&mut self, flags: u16, elems: &[(u64, &[u8], &[u8])]) -> Result<u64> {
        let id = self.next_id;
        let page = encode_page(id, flags, elems);
        self.out.write_all(&page)?;
        self.next_id += (page.len() / PAGE_SIZE) as u64;
        Ok(id)
    }
}

/// Packs one level of sorted elements into pages.
pub(crate) struct LevelBuilder {
    flags: u16,
    elems: Vec<(u64, Vec<u8>, Vec<u8>)>,
    data: usize,
    /// (first key, page id) of every page written so far.
    pub written: Vec<(Vec<u8>, u64)>,
}

impl LevelBuilder {
    pub fn leaf() -> Self {
        Self::new(LEAF)
    }

    fn new(flags: u16) -> Self {
        LevelBuilder {
            flags,
            elems: Vec::new(),
            data: 0,
            written: Vec::new(),
        }
    }

    /// Adds an element (keys must arrive sorted; the caller checks).
    pub fn push<W: Write>(
        &mut self,
        sink: &mut PageSink<W>,
        x: u64,
        k: Vec<u8>,
        v: Vec<u8>,
    ) -> Result<()> {
        let add = k.len() + v.len();
        if !self.elems.is_empty() && page_bytes(self.elems.len() + 1, self.data + add) > PAGE_SIZE {
            self.flush(sink)?;
        }
        self.data += add;
        self.elems.push((x, k, v));
        Ok(())
    }

    fn flush<W: Write>(&mut self, sink: &mut PageSink<W>) -> Result<()> {
        if self.elems.is_empty() {
            return Ok(());
        }
        let refs: Vec<(u64, &[u8], &[u8])> = self
            .elems
            .iter()
            .map(|(x, k, v)| (*x, k.as_slice(), v.as_slice()))
            .collect();
        let id = sink.write(self.flags, &refs)?;
        let first = std::mem::take(&mut self.elems).swap_remove(0).1;
        self.written.push((first, id));
        self.data = 0;
        Ok(())
    }

    /// Flushes the last page and builds branch levels up to one root; returns the root page id.
    pub fn finish<W: Write>(mut self, sink: &mut PageSink<W>) -> Result<u64> {
        self.flush(sink)?;
        let mut level = self.written;
        if level.is_empty() {
            // An empty bucket still needs a root page: an empty leaf, as bbolt writes it.
            return sink.write(LEAF, &[]);
        }
        while level.len() > 1 {
            let mut b = LevelBuilder::new(BRANCH);
            for (key, id) in level {
                b.push(sink, id, key, Vec::new())?;
            }
            b.flush(sink)?;
            level = b.written;
        }
        Ok(level[0].1)
    }
}
