//! HPACK bombs against the `:authority` rewriter in front of h2: crafted
//! header blocks over raw HTTP/2 connections must cost kvd no more memory
//! than h2's own limits allow (a 4096-byte dynamic table, a 16 KiB header
//! list), a rewritten connection that breaks them is closed, and the server
//! keeps serving everyone else.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const MAX_FRAME: usize = 16_384;
/// Growth of kvd's resident memory the whole test may cause. Without the
/// limits the bombs below cost about 700 MB.
const RSS_BUDGET_KIB: u64 = 50 * 1024;
/// How long the server may take to answer a PING or close a connection.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// kvd's resident set size from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value")
}

fn frame(ty: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[ty, flags]);
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(payload);
    f
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

/// A literal field with a new name: `first` 0x40 enters the dynamic table,
/// 0x00 does not.
fn literal(out: &mut Vec<u8>, first: u8, name: &[u8], value: &[u8]) {
    out.push(first);
    for s in [name, value] {
        put_int(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }
}

/// The fields of a gRPC request to KV/Range with `authority`.
fn request(authority: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    literal(&mut b, 0, b":path", b"/etcdserverpb.KV/Range");
    literal(&mut b, 0, b":authority", authority.as_bytes());
    literal(&mut b, 0, b"content-type", b"application/grpc");
    literal(&mut b, 0, b"te", b"trailers");
    b
}

/// A 4000-byte field entered in the dynamic table, then `refs` one-byte
/// references to it: `refs` x 4 KB once decoded.
fn bomb(refs: usize) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, 0x40, b"x", &[b'y'; 4000]);
    b.resize(b.len() + refs, 0xbe); // index 62: the newest table entry
    b
}

/// `block` as HEADERS + CONTINUATION frames of stream `id`.
fn header_frames(id: u32, block: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let ty = if i == 0 { HEADERS } else { CONTINUATION };
        let flags = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        out.extend(frame(ty, flags, id, c));
    }
    out
}

/// Connects, sends the preface and `frames`; a write the server cut short
/// by closing the connection is fine (closing is one of the answers).
async fn send(port: u16, frames: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to kvd");
    let start = [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat();
    s.write_all(&start).await.expect("write preface");
    if let Err(e) = s.write_all(frames).await {
        eprintln!("write ended early: {e}");
    }
    s
}

/// Reads server frames until the ACK of a PING we send now: the server has
/// handled every frame sent before it. Returns false if the server closed
/// the connection instead.
async fn ping(s: &mut TcpStream) -> bool {
    let _ = s.write_all(&frame(PING, 0, 0, b"12345678")).await;
    let mut buf = Vec::new();
    loop {
        while buf.len() >= 9 {
            let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == PING && buf[4] & ACK != 0 {
                return true;
            }
            buf.drain(..9 + len);
        }
        let mut chunk = [0u8; 16 * 1024];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn hpack_bombs_cost_bounded_memory() {
    kvd_only(|| async {
        let server = Server::start(Kind::Kvd).await;
        let pid = server.pid().expect("kvd pid");
        let port: u16 = server
            .endpoint()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let mut c = server.client().await;
        put(&mut c, "before", "1").await;
        let rss0 = rss_kib(pid);

        // First block of a connection (decoded to look for a URL
        // :authority): 160 MB of references inside a block within the size
        // limit, then 240 MB in a block over it. Both go to h2 untouched,
        // which refuses the request or the connection (its own judgement);
        // either way the block has been handled once the PING is answered
        // or the connection closed.
        for refs in [40_000, 60_000] {
            let block = [request("127.0.0.1"), bomb(refs)].concat();
            let mut s = send(port, &header_frames(1, &block)).await;
            let alive = within("first-block bomb handled", IO_TIMEOUT, ping(&mut s)).await;
            eprintln!("first-block bomb of {refs} references: connection open: {alive}");
        }

        // After a rewritten :authority every block is decoded: the same bomb,
        // and a dynamic table grown past 4096 bytes, close the connection.
        let url = server.endpoint();
        let first = header_frames(1, &request(&url));
        let mut grow = Vec::new();
        for i in 0..200u32 {
            let mut b = Vec::new();
            put_int(&mut b, 0x20, 5, 1 << 24); // dynamic table size update
                                               // Small enough for h2 to take the re-encoded block, so only the
                                               // table size limit tells these apart from honest blocks.
            literal(&mut b, 0x40, b"z", &[b'w'; 3_000]);
            b.extend(request(&url));
            grow.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3 + 2 * i, &b));
        }
        for (what, rest) in [
            ("header list bomb", header_frames(3, &bomb(40_000))),
            ("table growth", grow),
        ] {
            let mut s = send(port, &[first.clone(), rest].concat()).await;
            let alive = within("connection closed", IO_TIMEOUT, ping(&mut s)).await;
            assert!(!alive, "{what} after a rewrite: the connection stays open");
        }

        let rss1 = rss_kib(pid);
        eprintln!("kvd RSS {rss0} KiB before the bombs, {rss1} KiB after");
        assert!(
            rss1 < rss0 + RSS_BUDGET_KIB,
            "kvd RSS grew from {rss0} KiB to {rss1} KiB"
        );
        // Everyone else is still served, etcdctl's URL authority included.
        put(&mut c, "after", "2").await;
        let out = server.etcdctl(&["get", "after", "--print-value-only"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    })
    .await;
}
