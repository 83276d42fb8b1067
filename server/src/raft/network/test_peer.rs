//! A fake peer's answers, shared by the network's unit tests (raw h2, so
//! the tests see exactly the calls the network makes).

use bytes::{BufMut, Bytes, BytesMut};
use kv_proto::kvpb::RaftMessage;
use prost::Message;

/// One gRPC message: the 5-byte prefix, then the encoded message.
pub(super) fn grpc_frame(msg: &RaftMessage) -> Bytes {
    let body = msg.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// Answers one unary call with `msg` and an OK status; a caller that went
/// away is no error here.
pub(super) fn answer(mut respond: h2::server::SendResponse<Bytes>, msg: &RaftMessage) {
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a static response");
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    let _ = send.send_data(grpc_frame(msg), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}
