//! Request decoding and response encoding as etcd's grpc-gateway (v1) does
//! them: JSON bodies, its error body and its gRPC-code-to-HTTP-status table.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Code, Status};

use crate::node::Node;

/// etcd's gRPC server accepts this much on top of --max-request-bytes
/// (api/mod.rs's GRPC_OVERHEAD_BYTES); the gateway goes through it.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// grpc-gateway v1's error body (`runtime.errorBody`), in its field order;
/// `details` is empty for etcd's errors and so left out.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

/// grpc-gateway v1's in-stream error (`runtime.streamError`).
#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

/// Decodes a request body as etcd's gateway does: an empty body (or
/// `null`) is the empty message; only the first JSON value counts (Go's json.Decoder);
/// unknown fields are ignored. A message larger than the gRPC server would
/// accept is refused as grpc-go refuses it.
pub(super) fn decode<T>(node: &Node, body: &[u8]) -> Result<T, Status>
where
    T: DeserializeOwned + prost::Message + Default,
{
    let msg = match serde_json::Deserializer::from_slice(body)
        .into_iter::<Option<T>>()
        .next()
    {
        // Go's decoder takes `null` as the empty message too.
        None | Some(Ok(None)) => T::default(),
        Some(Ok(Some(m))) => m,
        Some(Err(e)) => return Err(Status::invalid_argument(go_json_error(&e, body))),
    };
    let max = node.max_request_bytes() + GRPC_OVERHEAD_BYTES;
    let len = msg.encoded_len();
    if len > max {
        return Err(Status::resource_exhausted(format!(
            "grpc: received message larger than max ({len} vs. {max})"
        )));
    }
    Ok(msg)
}

/// Every JSON value `body` holds, in order (a streaming call's requests);
/// decoding stops at the first malformed one, as etcd's gateway stops
/// reading its request stream there.
pub(super) fn decode_all<T>(node: &Node, body: &[u8]) -> Result<Vec<T>, Status>
where
    T: DeserializeOwned + prost::Message + Default,
{
    let max = node.max_request_bytes() + GRPC_OVERHEAD_BYTES;
    let mut out = Vec::new();
    for item in serde_json::Deserializer::from_slice(body).into_iter::<Option<T>>() {
        match item.map(Option::unwrap_or_default) {
            Ok(m) if m.encoded_len() > max => {
                return Err(Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({} vs. {max})",
                    m.encoded_len()
                )))
            }
            Ok(m) => out.push(m),
            Err(e) if out.is_empty() => {
                // etcd's gateway fails a stream's first request with
                // Unknown (its decode error is not a gRPC status there).
                return Err(Status::unknown(go_json_error(&e, body)));
            }
            Err(_) => break,
        }
    }
    Ok(out)
}

/// A serde_json error in the words of Go's decoder where the case is
/// common (truncated input, a stray character, bad base64), since clients
/// show the gateway's message as is; otherwise serde's own text without
/// its position suffix.
fn go_json_error(e: &serde_json::Error, body: &[u8]) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "unexpected EOF".to_string(),
        Category::Syntax => {
            let text = strip_position(e);
            match (
                go_syntax_context(&text),
                offending_byte(body, e.line(), e.column()),
            ) {
                (Some(context), Some(b)) => {
                    format!("invalid character {} {context}", go_quote_char(b))
                }
                _ => text,
            }
        }
        Category::Data | Category::Io => {
            let text = strip_position(e);
            base64_offset(&text)
                .map(|at| format!("illegal base64 data at input byte {at}"))
                .unwrap_or(text)
        }
    }
}

/// Go's scanner wording for where a serde_json syntax error happened.
fn go_syntax_context(serde_text: &str) -> Option<&'static str> {
    Some(match serde_text {
        "expected value" => "looking for beginning of value",
        "key must be a string" => "looking for beginning of object key string",
        "expected `:`" => "after object key",
        "expected `,` or `}`" => "after object key:value pair",
        "expected `,` or `]`" => "after array element",
        _ => return None,
    })
}

/// serde_json's message without " at line L column C".
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The byte serde_json stopped at (its 1-based line and column).
fn offending_byte(body: &[u8], line: usize, column: usize) -> Option<u8> {
    let start = body
        .split(|b| *b == b'\n')
        .take(line.checked_sub(1)?)
        .map(|l| l.len() + 1)
        .sum::<usize>();
    body.get(start + column.checked_sub(1)?).copied()
}

/// Go's `quoteChar`: 'x' for printable ASCII, escaped otherwise.
fn go_quote_char(b: u8) -> String {
    match b {
        b'\'' => r"'\''".to_string(),
        b'"' => r#"'"'"#.to_string(),
        0x20..=0x7e => format!("'{}'", b as char),
        _ => format!("'\\x{b:02x}'"),
    }
}

/// The input offset in a base64 crate error ("Invalid symbol 33, offset 4."
/// or "Invalid last symbol 61, offset 3."), as Go's CorruptInputError names it.
fn base64_offset(text: &str) -> Option<usize> {
    if !text.starts_with("Invalid symbol ") && !text.starts_with("Invalid last symbol ") {
        return None;
    }
    let (_, tail) = text.rsplit_once("offset ")?;
    tail.trim_end_matches('.').parse().ok()
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
pub(super) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The headers etcd's gateway puts on every answer (its CORS wrapper).
pub(super) fn with_gateway_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    resp
}

/// Any method but POST on a gateway path, as etcd answers it: its CORS
/// wrapper takes OPTIONS (a browser's preflight), the rest gets Go's 405.
pub(super) async fn other_method(method: Method) -> Response {
    if method == Method::OPTIONS {
        let mut resp = with_gateway_headers(Response::new(Body::empty()));
        resp.headers_mut().remove(header::CONTENT_TYPE);
        return resp;
    }
    let mut resp = with_gateway_headers(Response::new(Body::from("Method Not Allowed\n")));
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn respond(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    with_gateway_headers(resp)
}

/// A 200 answer with `msg` as JSON.
pub(super) fn json<T: Serialize>(msg: &T) -> Response {
    match serde_json::to_vec(msg) {
        Ok(body) => respond(StatusCode::OK, body),
        Err(e) => error(&Status::internal(e.to_string())),
    }
}

/// etcd's gateway error answer for `status`.
pub(super) fn error(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    };
    // Serializing two strings and an integer cannot fail.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    respond(http_status(status.code()), bytes)
}

/// One line of a streamed answer: `{"result": msg}` as grpc-gateway
/// delimits stream messages.
pub(super) fn stream_line<T: Serialize>(msg: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Line<'a, T> {
        result: &'a T,
    }
    let mut out = serde_json::to_vec(&Line { result: msg }).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The line ending a streamed answer with `status`: `{"error": {...}}`.
pub(super) fn stream_error_line(status: &Status) -> Vec<u8> {
    #[derive(Serialize)]
    struct Line<'a> {
        error: StreamError<'a>,
    }
    let http = http_status(status.code());
    let line = Line {
        error: StreamError {
            grpc_code: status.code() as i32,
            http_code: http.as_u16(),
            message: status.message(),
            http_status: http.canonical_reason().unwrap_or(""),
        },
    };
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_texts_for_common_json_errors() {
        let bad = |body: &str| {
            let e = serde_json::from_str::<serde_json::Value>(body).unwrap_err();
            go_json_error(&e, body.as_bytes())
        };
        assert_eq!(bad(r#"{"key":"Zm9v","#), "unexpected EOF");
        assert_eq!(
            bad(r#"{"limit":abc}"#),
            "invalid character 'a' looking for beginning of value"
        );
        assert_eq!(
            bad(r#"{bad"#),
            "invalid character 'b' looking for beginning of object key string"
        );
        assert_eq!(
            bad(r#"{"key" "eA=="}"#),
            r#"invalid character '"' after object key"#
        );
        assert_eq!(
            bad(r#"{"key":"eA==" "x":1}"#),
            r#"invalid character '"' after object key:value pair"#
        );
        assert_eq!(bad("[1 2]"), "invalid character '2' after array element");
        assert_eq!(base64_offset("Invalid symbol 33, offset 4."), Some(4));
        assert_eq!(base64_offset("Invalid padding"), None);
    }

    #[test]
    fn codes_map_as_grpc_gateway_v1() {
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(http_status(Code::OutOfRange), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
    }
}
