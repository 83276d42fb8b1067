//! gRPC plumbing shared by the client API (`api/`) and the peer service
//! (`node/peer.rs`), so neither imports the other.
//!
//! An oversized request is answered as grpc-go (and so etcd) answers it:
//! ResourceExhausted "grpc: received message larger than max (N vs. M)",
//! which etcd clients print as is. tonic's own answer is OutOfRange with
//! different text.

use http::{HeaderValue, Response};
use tokio::sync::watch as signal;

/// Resolves once `stop` turns true (or its sender is gone): the shutdown
/// signal of every gRPC server kvd runs.
pub async fn stopped(mut stop: signal::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
}

const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// Rewrites tonic's "message too large" status into grpc-go's.
pub fn grpc_go_size_status<B>(mut resp: Response<B>) -> Response<B> {
    let h = resp.headers();
    if h.get("grpc-status").is_none_or(|s| s != "11") {
        return resp;
    }
    let Some(msg) = h.get("grpc-message").and_then(|m| m.to_str().ok()) else {
        return resp;
    };
    // grpc-message is percent-encoded on the wire (tonic encodes spaces).
    let Some(text) = grpc_go_text(&percent_decode(msg)) else {
        return resp;
    };
    if let Ok(v) = HeaderValue::from_str(&text.replace(' ', "%20")) {
        let h = resp.headers_mut();
        h.insert("grpc-status", HeaderValue::from_static("8"));
        h.insert("grpc-message", v);
    }
    resp
}

/// grpc-go's status for tonic's "message too large" one, for errors that
/// come after the response headers (a streamed request, as on Watch) and
/// so never pass [`grpc_go_size_status`]; `None` for any other status.
pub fn grpc_go_stream_status(s: &tonic::Status) -> Option<tonic::Status> {
    if s.code() != tonic::Code::OutOfRange {
        return None;
    }
    grpc_go_text(s.message()).map(tonic::Status::resource_exhausted)
}

/// grpc-go's text for tonic's (decoded) "message too large" text.
fn grpc_go_text(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix(TONIC_TOO_LARGE)?;
    // "<found> bytes, the limit is: <limit> bytes"
    let nums: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let [found, limit] = nums[..] else {
        return None;
    };
    Some(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ))
}

/// Decodes `%XX` escapes (the gRPC spec's grpc-message encoding); anything
/// malformed is kept as is.
///
/// ```
/// assert_eq!(kvd::grpc::percent_decode("a%20b%zz"), "a b%zz");
/// ```
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_size_error() {
        let resp = Response::builder()
            .header("grpc-status", "11")
            .header(
                "grpc-message",
                // As tonic sends it: percent-encoded.
                "Error,%20decoded%20message%20length%20too%20large:%20found%203000000%20bytes,%20the%20limit%20is:%202097152%20bytes",
            )
            .body(())
            .unwrap();
        let out = grpc_go_size_status(resp);
        assert_eq!(out.headers()["grpc-status"], "8");
        assert_eq!(
            percent_decode(out.headers()["grpc-message"].to_str().unwrap()),
            "grpc: received message larger than max (3000000 vs. 2097152)"
        );
        let other = Response::builder()
            .header("grpc-status", "11")
            .header(
                "grpc-message",
                "etcdserver: mvcc: required revision has been compacted",
            )
            .body(())
            .unwrap();
        assert_eq!(grpc_go_size_status(other).headers()["grpc-status"], "11");
    }

    #[test]
    fn rewrites_the_streamed_size_error() {
        let tonic = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 3000000 bytes, the limit is: 2097152 bytes",
        );
        let s = grpc_go_stream_status(&tonic).expect("rewritten");
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "grpc: received message larger than max (3000000 vs. 2097152)"
        );
        let other =
            tonic::Status::out_of_range("etcdserver: mvcc: required revision is a future revision");
        assert!(grpc_go_stream_status(&other).is_none());
    }
}
