//! KV's unary calls on the wire, over raw HTTP/2: kvd answers them ahead of
//! its router (api/kv_unary.rs), and every answer must keep what the router
//! path gave: status, headers, trailers and message.
//! Also the paths left to the router (RangeStream, unknown KV methods).
//!
//! With `KV_UNARY_OLD_KVD=<path to another kvd binary>` the same calls are
//! made against that binary too and the two transcripts must be equal (how
//! the fast path was checked against the router-only build).

mod common;

use bytes::Bytes;
use common::{Kvd, Options, Server};
use kv_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use kv_proto::etcdserverpb::request_op::Request as Op;
use kv_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse,
};
use prost::Message;
use tokio::net::TcpStream;

/// --max-request-bytes for the server: small, so that an oversized request
/// is cheap to send (kvd accepts 512 KiB of gRPC framing on top).
const MAX_REQUEST_BYTES: usize = 1024;
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// One call's answer, as the client saw it.
struct Answer {
    status: u16,
    /// Response headers, sorted, without `date`.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn sorted(h: &http::HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = h
        .iter()
        .filter(|(n, _)| *n != http::header::DATE)
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A gRPC message frame's header (uncompressed).
fn frame_header(len: usize) -> Vec<u8> {
    let mut f = vec![0];
    f.extend_from_slice(&(len as u32).to_be_bytes());
    f
}

/// A gRPC message frame (uncompressed).
fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = frame_header(msg.len());
    f.extend_from_slice(msg);
    f
}

/// Sends one request (`body` as its only DATA frame) on a new stream and
/// reads the whole answer.
async fn call(
    h2: &h2::client::SendRequest<Bytes>,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    let req = req.body(()).expect("request");
    let mut h2 = h2.clone().ready().await.expect("connection ready");
    let (resp, mut send) = h2.send_request(req, false).expect("send request");
    send.send_data(Bytes::from(body), true).expect("send body");
    let resp = resp.await.expect("response");
    let (parts, mut recv) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("response data");
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.expect("trailers");
    Answer {
        status: parts.status.as_u16(),
        headers: sorted(&parts.headers),
        body: data,
        trailers: trailers.as_ref().map(sorted).unwrap_or_default(),
    }
}

/// The message of a one-message body, with the header's member and cluster
/// IDs zeroed (they differ between servers).
fn message<M: Message + Default + std::fmt::Debug>(
    body: &[u8],
    header: impl Fn(&mut M) -> Option<&mut ResponseHeader>,
) -> String {
    if body.is_empty() {
        return "no message".to_string();
    }
    assert!(body.len() >= 5, "a gRPC frame: {body:?}");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + len, "one message, all of the body");
    let mut m = M::decode(&body[5..]).expect("decode the message");
    if let Some(h) = header(&mut m) {
        h.cluster_id = 0;
        h.member_id = 0;
    }
    format!("flag={} {m:?}", body[0])
}

/// How many gRPC frames `body` holds.
fn frames(mut body: &[u8]) -> usize {
    let mut n = 0;
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        body = body.get(5 + len..).unwrap_or_default();
        n += 1;
    }
    n
}

fn put(key: &[u8], value: &[u8]) -> Vec<u8> {
    frame(
        &PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn range(key: &[u8], revision: i64) -> Vec<u8> {
    frame(
        &RangeRequest {
            key: key.to_vec(),
            revision,
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// One call: its name, path, extra headers and body.
type Call = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
);

/// Every call of the transcript, in order, and what each answer was.
async fn transcript(srv: &Server) -> Vec<(String, Answer)> {
    let authority = srv.endpoint().trim_start_matches("http://").to_string();
    let tcp = TcpStream::connect(&authority).await.expect("connect");
    let (h2, conn) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: b"k".to_vec(),
            target_union: Some(TargetUnion::Value(b"v".to_vec())),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: b"k".to_vec(),
                value: b"w".to_vec(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    let calls: Vec<Call> = vec![
        ("put", "/etcdserverpb.KV/Put", vec![], put(b"k", b"v")),
        ("range", "/etcdserverpb.KV/Range", vec![], range(b"k", 0)),
        (
            "txn",
            "/etcdserverpb.KV/Txn",
            vec![],
            frame(&txn.encode_to_vec()),
        ),
        (
            "delete",
            "/etcdserverpb.KV/DeleteRange",
            vec![],
            frame(
                &DeleteRangeRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
        ),
        (
            "compact",
            "/etcdserverpb.KV/Compact",
            vec![],
            frame(
                &CompactionRequest {
                    revision: 2,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
        ),
        // Errors: answered with trailers only.
        ("empty key", "/etcdserverpb.KV/Put", vec![], put(b"", b"v")),
        (
            "future revision",
            "/etcdserverpb.KV/Range",
            vec![],
            range(b"k", 1_000),
        ),
        (
            "compacted revision",
            "/etcdserverpb.KV/Range",
            vec![],
            range(b"k", 1),
        ),
        (
            // Only the frame header, announcing more than the limit.
            "too large",
            "/etcdserverpb.KV/Put",
            vec![],
            frame_header(MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES + 1),
        ),
        (
            "malformed",
            "/etcdserverpb.KV/Txn",
            vec![],
            frame(&[0xff, 0xff, 0xff]),
        ),
        ("no message", "/etcdserverpb.KV/Range", vec![], Vec::new()),
        (
            "compressed",
            "/etcdserverpb.KV/Put",
            vec![("grpc-encoding", "gzip")],
            put(b"k", b"v"),
        ),
        // Left to the router.
        (
            "range stream",
            "/etcdserverpb.KV/RangeStream",
            vec![],
            range(b"k", 0),
        ),
        (
            "unknown method",
            "/etcdserverpb.KV/Nope",
            vec![],
            Vec::new(),
        ),
    ];
    let mut out = Vec::new();
    for (name, path, extra, body) in calls {
        let a = call(&h2, &authority, path, &extra, body).await;
        out.push((name.to_string(), a));
    }
    out
}

/// One line per answer, IDs zeroed: what must not change.
fn lines(t: &[(String, Answer)]) -> Vec<String> {
    t.iter()
        .map(|(name, a)| {
            let msg = match name.as_str() {
                "put" => message::<PutResponse>(&a.body, |m| m.header.as_mut()),
                "range" => message::<RangeResponse>(&a.body, |m| m.header.as_mut()),
                "txn" => message::<TxnResponse>(&a.body, |m| m.header.as_mut()),
                "delete" => message::<DeleteRangeResponse>(&a.body, |m| m.header.as_mut()),
                "compact" => message::<CompactionResponse>(&a.body, |m| m.header.as_mut()),
                // Their IDs change the lengths: only how many.
                "range stream" => format!("{} messages", frames(&a.body)),
                _ => format!("{:?}", a.body),
            };
            format!(
                "{name}: {} {:?} {msg} {:?}",
                a.status, a.headers, a.trailers
            )
        })
        .collect()
}

fn options() -> Options {
    Options::default().arg("max-request-bytes", MAX_REQUEST_BYTES)
}

#[tokio::test]
async fn kv_unary_answers_keep_their_wire_form() {
    let srv = Server::start_with(Kvd, options()).await;
    let t = transcript(&srv).await;
    let by = |name: &str| &t.iter().find(|(n, _)| n == name).expect(name).1;
    for (name, a) in &t {
        assert_eq!(a.status, 200, "{name}");
        assert_eq!(a.header("content-type"), Some("application/grpc"), "{name}");
    }
    // Answers with a message: headers, the message, then the status in the
    // trailers; no content-length.
    for name in ["put", "range", "txn", "delete", "compact", "range stream"] {
        let a = by(name);
        assert_eq!(a.header("content-length"), None, "{name}");
        assert_eq!(a.header("grpc-status"), None, "{name}");
        assert_eq!(a.trailer("grpc-status"), Some("0"), "{name}");
        assert!(!a.body.is_empty(), "{name}");
    }
    assert!(lines(&t)[2].contains("succeeded: true"), "{}", lines(&t)[2]);
    // Trailers-only answers: the status in the headers, no content-length
    // (as the router's path gave them).
    let errors = [
        ("empty key", "3", "etcdserver: key is not provided"),
        (
            "future revision",
            "11",
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            "compacted revision",
            "11",
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            "too large",
            "8",
            "grpc: received message larger than max (525313 vs. 525312)",
        ),
        ("malformed", "13", ""),
        ("no message", "13", "Missing request message."),
        ("compressed", "12", ""),
        ("unknown method", "12", ""),
    ];
    for (name, code, text) in errors {
        let a = by(name);
        assert_eq!(a.header("content-length"), None, "{name}");
        assert_eq!(a.header("grpc-status"), Some(code), "{name}");
        assert!(a.body.is_empty() && a.trailers.is_empty(), "{name}");
        let msg = a.header("grpc-message").unwrap_or("");
        assert!(
            kvd::grpc::percent_decode(msg).starts_with(text),
            "{name}: grpc-message {msg:?}, wanted {text:?}"
        );
    }
    if let Some(old) = std::env::var_os("KV_UNARY_OLD_KVD") {
        drop(srv);
        let old = Server::start_with(Kvd, options().binary(old.into())).await;
        assert_eq!(lines(&transcript(&old).await), lines(&t));
    }
}
