//! Works around etcdctl 3.4 sending the whole endpoint URL as the HTTP/2
//! `:authority` (`http://127.0.0.1:2379`) on per-endpoint calls: grpc-go
//! accepts it, h2 resets the stream with PROTOCOL_ERROR. [`AuthorityFix`]
//! filters the client->server bytes of a connection before hyper sees them
//! and rewrites such an authority to `host:port`.
//!
//! The first header block of a connection is HPACK-decoded. If its authority
//! is fine, the connection passes through untouched from then on (a client
//! keeps one authority per connection). If it needs a rewrite, every block is
//! decoded (one decoder per connection tracks the client's dynamic table) and
//! re-encoded as literals without indexing, so the server's stale dynamic
//! table is never referenced. Other frames are streamed through unbuffered.
//!
//! h2 checks `:authority` while it converts a header block into a request,
//! before any hyper or tower hook runs, and has no option to relax that: the
//! rewrite has to happen on the bytes. Decoding them is held to h2's own
//! limits, so a crafted block costs no more here than it does in h2: the
//! dynamic table to the 4096 bytes we advertise (SETTINGS_HEADER_TABLE_SIZE),
//! a decoded header list to hyper's 16 KiB (SETTINGS_MAX_HEADER_LIST_SIZE,
//! counted as RFC 7540 6.5.2 does) and a buffered block to twice that. Past
//! a limit, a block not yet rewritten goes to h2 untouched (h2 refuses it);
//! on a connection already rewritten, the connection is failed.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use loona_hpack::Decoder;
use tokio::io::{AsyncRead, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE; the server does not raise it.
const MAX_FRAME: usize = 16_384;
/// HTTP/2's default SETTINGS_HEADER_TABLE_SIZE, which kvd advertises: the
/// most a client may grow the HPACK dynamic table to.
const HEADER_TABLE_SIZE: usize = 4_096;
/// hyper's SETTINGS_MAX_HEADER_LIST_SIZE (kvd keeps the default): the most
/// decoded header bytes a request may carry, each field counted with 32
/// bytes of overhead (RFC 7540 6.5.2).
const MAX_HEADER_LIST: usize = 16 * 1024;
/// Per-field overhead in the header list size (RFC 7540 6.5.2).
const FIELD_OVERHEAD: usize = 32;
/// Bound on a buffered (encoded) header block: a list within
/// `MAX_HEADER_LIST` never needs more, even with padding and frame headers.
const MAX_BLOCK: usize = 2 * MAX_HEADER_LIST + MAX_FRAME;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// This many bytes (preface or a non-header frame's payload) pass verbatim.
    Verbatim(usize),
    /// At a frame boundary.
    FrameHeader,
    /// Gave up before any rewrite: everything passes through; h2 judges it.
    Disabled,
    /// Gave up after a rewrite: the server's HPACK state can no longer match
    /// the client's, so the connection is failed instead of misdecoded.
    Failed,
}

impl Default for State {
    fn default() -> Self {
        State::Verbatim(PREFACE_LEN)
    }
}

/// Read-side filter of one connection; writes go straight to `inner`.
pub struct AuthorityFix<S> {
    inner: S,
    f: Filter,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        let f = Filter::default();
        AuthorityFix { inner, f }
    }
}

/// The connection-independent part: bytes in, bytes out.
struct Filter {
    state: State,
    decoder: Decoder<'static>,
    /// A block needed a rewrite: all later blocks are re-encoded.
    reencode: bool,
    /// Read but unprocessed input (an incomplete frame).
    held: Vec<u8>,
    /// Processed output not yet handed to the reader.
    out: Vec<u8>,
    out_pos: usize,
    /// The open header block: a HEADERS frame seen, END_HEADERS not yet.
    open: bool,
    stream_id: u32,
    hflags: u8,
    priority: Option<[u8; 5]>,
    /// The open block's HPACK fragments and its original frames' bytes.
    frag: Vec<u8>,
    raw: Vec<u8>,
    enc: Vec<u8>,
}

impl Default for Filter {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        // A size update above what we advertise is a decoding error (as in h2).
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Filter {
            state: State::default(),
            decoder,
            reencode: false,
            held: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            open: false,
            stream_id: 0,
            hflags: 0,
            priority: None,
            frag: Vec::new(),
            raw: Vec::new(),
            enc: Vec::new(),
        }
    }
}

impl Filter {
    /// Advances over the prefix of `data` that passes verbatim; stops at a
    /// header-block frame (or any frame while a block is open) or at an
    /// incomplete frame header.
    fn scan(&mut self, data: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            match self.state {
                State::Disabled => return data.len(),
                State::Failed => return pos,
                State::Verbatim(n) => {
                    let k = n.min(rest.len());
                    pos += k;
                    if k < n {
                        self.state = State::Verbatim(n - k);
                        return pos;
                    }
                    self.state = State::FrameHeader;
                }
                State::FrameHeader => {
                    let short = rest.len() < FRAME_HEADER_LEN;
                    if self.open || short || rest[3] == HEADERS || rest[3] == CONTINUATION {
                        return pos;
                    }
                    self.state = State::Verbatim(frame_len(rest));
                    pos += FRAME_HEADER_LEN;
                }
            }
        }
    }

    /// Processes `data`, appending to `out`; returns how much was consumed
    /// (the rest is an incomplete frame).
    fn process(&mut self, data: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            if self.state == State::Failed {
                return data.len();
            }
            let k = self.scan(&data[pos..]);
            self.out.extend_from_slice(&data[pos..pos + k]);
            pos += k;
            let rest = &data[pos..];
            if self.state != State::FrameHeader || rest.len() < FRAME_HEADER_LEN {
                return pos;
            }
            let need = FRAME_HEADER_LEN + frame_len(rest);
            if self.raw.len() + need > MAX_BLOCK {
                self.give_up();
                continue;
            }
            if rest.len() < need {
                return pos;
            }
            pos += need;
            self.header_frame(&rest[..need]);
        }
    }

    /// Handles one complete frame that starts or continues a header block.
    fn header_frame(&mut self, f: &[u8]) {
        let (ty, flags) = (f[3], f[4]);
        let id = stream_id(f);
        self.raw.extend_from_slice(f);
        let payload = &f[FRAME_HEADER_LEN..];
        if ty == HEADERS && !self.open {
            let mut p = payload;
            if flags & PADDED != 0 {
                match p.split_first() {
                    Some((&pad, rest)) if rest.len() >= pad as usize => {
                        p = &rest[..rest.len() - pad as usize];
                    }
                    _ => return self.give_up(),
                }
            }
            self.priority = None;
            if flags & PRIORITY != 0 {
                let Some((prio, rest)) = p.split_first_chunk::<5>() else {
                    return self.give_up();
                };
                self.priority = Some(*prio);
                p = rest;
            }
            (self.open, self.stream_id, self.hflags) = (true, id, flags);
            self.frag.extend_from_slice(p);
        } else if ty == CONTINUATION && self.open && id == self.stream_id {
            self.frag.extend_from_slice(payload);
        } else {
            // A protocol error h2 reports better than we could.
            return self.give_up();
        }
        if flags & END_HEADERS != 0 {
            self.finish_block();
        }
    }

    /// Decodes the complete block and emits it verbatim or re-encoded.
    fn finish_block(&mut self) {
        self.enc.clear();
        let mut changed = false;
        let mut list_size = 0usize;
        let enc = &mut self.enc;
        // The decoder cannot be stopped from the callback, and must see the
        // whole block to keep its table in step; past the list limit it only
        // counts (indexed fields cost no allocation), so a block of table
        // references decodes in bounded memory.
        let res = self.decoder.decode_with_cb(&self.frag, |name, value| {
            list_size = list_size.saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
            if list_size > MAX_HEADER_LIST {
                return;
            }
            let fixed = (&*name == b":authority")
                .then(|| fix_authority(&value))
                .flatten();
            changed |= fixed.is_some();
            put_literal(enc, &name, fixed.unwrap_or(&value));
        });
        if res.is_err() || list_size > MAX_HEADER_LIST {
            tracing::debug!(
                list_size,
                decoded = res.is_ok(),
                "HTTP/2 header block over h2's limits or undecodable"
            );
            self.enc.clear();
            return self.give_up();
        }
        if !changed && !self.reencode {
            self.out.extend_from_slice(&self.raw);
            // A client keeps one authority per connection: once its first
            // block is fine, stop decoding (HPACK decoding costs ~15% of a
            // put's CPU) and pass the connection through untouched.
            self.state = State::Disabled;
        } else {
            self.reencode = true;
            self.emit_reencoded();
        }
        self.open = false;
        self.raw.clear();
        self.frag.clear();
    }

    /// Writes `enc` as HEADERS (+ CONTINUATIONs) for the open block's stream.
    fn emit_reencoded(&mut self) {
        let mut rest = &self.enc[..];
        let mut first = true;
        loop {
            let prio = self.priority.filter(|_| first);
            let cap = MAX_FRAME - if prio.is_some() { 5 } else { 0 };
            let (chunk, tail) = rest.split_at(rest.len().min(cap));
            rest = tail;
            let (ty, mut flags) = match first {
                true => (HEADERS, self.hflags & (END_STREAM | PRIORITY)),
                false => (CONTINUATION, 0),
            };
            if rest.is_empty() {
                flags |= END_HEADERS;
            }
            let len = chunk.len() + prio.map_or(0, |p| p.len());
            self.out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
            self.out.extend_from_slice(&[ty, flags]);
            self.out.extend_from_slice(&self.stream_id.to_be_bytes());
            if let Some(p) = prio {
                self.out.extend_from_slice(&p);
            }
            self.out.extend_from_slice(chunk);
            first = false;
            if rest.is_empty() {
                return;
            }
        }
    }

    /// Stops filtering: before any rewrite the held original bytes go through
    /// unchanged; after one, the connection is failed.
    fn give_up(&mut self) {
        if self.reencode {
            tracing::debug!(
                "HTTP/2 header block not decodable after an :authority rewrite; closing"
            );
            self.state = State::Failed;
            self.raw = Vec::new();
            self.frag = Vec::new();
            return;
        }
        self.out.extend_from_slice(&self.raw);
        self.raw.clear();
        self.frag.clear();
        self.open = false;
        self.state = State::Disabled;
    }
}

fn frame_len(h: &[u8]) -> usize {
    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2])
}

fn stream_id(h: &[u8]) -> u32 {
    u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff
}

/// `http://host:port/path` -> `host:port`; None when no change is needed.
fn fix_authority(v: &[u8]) -> Option<&[u8]> {
    let lower = |n: usize| v.get(..n).map(|p| p.to_ascii_lowercase());
    let s = if lower(7).as_deref() == Some(b"http://") {
        &v[7..]
    } else if lower(8).as_deref() == Some(b"https://") {
        &v[8..]
    } else if v.windows(3).any(|w| w == b"://") {
        return None; // another scheme (unix://): not ours to guess
    } else {
        v
    };
    let end = s.iter().position(|c| b"/?#".contains(c));
    let host = &s[..end.unwrap_or(s.len())];
    (host.len() != v.len() && !host.is_empty()).then_some(host)
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 5.1).
fn put_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2).
fn put_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    for s in [name, value] {
        put_int(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let AuthorityFix { inner, f } = self.get_mut();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if f.out_pos < f.out.len() {
                let n = (f.out.len() - f.out_pos).min(buf.remaining());
                buf.put_slice(&f.out[f.out_pos..f.out_pos + n]);
                f.out_pos += n;
                if f.out_pos == f.out.len() {
                    f.out.clear();
                    f.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if f.state == State::Failed {
                let msg = "undecodable HTTP/2 header block after an :authority rewrite";
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, msg)));
            }
            // Read straight into the caller's buffer: the common case (no
            // header block in this read) costs one scan and no copy.
            let start = buf.filled().len();
            ready!(Pin::new(&mut *inner).poll_read(cx, buf))?;
            let end = buf.filled().len();
            if end == start {
                // EOF: hand over what is held (h2 reports the truncation),
                // unless we rewrote before (then the stale bytes are useless).
                if f.held.is_empty() && !f.open || f.reencode {
                    return Poll::Ready(Ok(()));
                }
                f.give_up();
                f.out.append(&mut f.held);
                continue;
            }
            let k = match f.held.is_empty() {
                true => f.scan(&buf.filled()[start..]),
                false => 0,
            };
            if start + k == end {
                return Poll::Ready(Ok(()));
            }
            f.held.extend_from_slice(&buf.filled()[start + k..]);
            buf.set_filled(start + k);
            let held = std::mem::take(&mut f.held);
            let used = f.process(&held);
            f.held = held;
            f.held.drain(..used);
            if k > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

crate::write_through::write_through!(AuthorityFix);

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;
