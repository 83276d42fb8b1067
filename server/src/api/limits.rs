//! An oversized request is answered as grpc-go (and so etcd) answers it:
//! ResourceExhausted "grpc: received message larger than max (N vs. M)",
//! which etcd clients print as is. tonic's own answer is OutOfRange with
//! different text.

use http::{HeaderValue, Response};

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
    let Some(rest) = msg.strip_prefix(TONIC_TOO_LARGE) else {
        return resp;
    };
    // "<found> bytes, the limit is: <limit> bytes"
    let nums: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let [found, limit] = nums[..] else {
        return resp;
    };
    let text = format!("grpc: received message larger than max ({found} vs. {limit})");
    if let Ok(v) = HeaderValue::from_str(&text) {
        let h = resp.headers_mut();
        h.insert("grpc-status", HeaderValue::from_static("8"));
        h.insert("grpc-message", v);
    }
    resp
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
                "Error, decoded message length too large: found 3000000 bytes, the limit is: 2097152 bytes",
            )
            .body(())
            .unwrap();
        let out = grpc_go_size_status(resp);
        assert_eq!(out.headers()["grpc-status"], "8");
        assert_eq!(
            out.headers()["grpc-message"],
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
}
