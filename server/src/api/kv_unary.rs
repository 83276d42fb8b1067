//! etcdserverpb.KV's unary methods (Range, Put, DeleteRange, Txn, Compact),
//! served ahead of the client port's router.
//!
//! They are nearly every call a loaded member gets. Through the router each
//! paid for axum's routing (a path look-up, a boxed service cloned and
//! called, the body boxed again, path parameters inserted), the generated
//! server's two boxed futures, and tonic's default codec buffers: 8 KiB to
//! read and 8 KiB to write per call, sizes glibc's malloc serves outside its
//! per-thread cache (which holds chunks up to 1032 bytes).
//!
//! [`KvUnaryLayer`], the innermost layer, answers exactly these five paths
//! itself with the same tonic machinery (`Grpc::unary`, prost, the size
//! limits and compression settings of the generated `KvServer`), one boxed
//! future and small buffers. Every other path (RangeStream,
//! unknown KV methods, the other services, HTTP) goes to the router as
//! before, and the outer layers (token, size status, metrics, nudge) see
//! the same calls and answers.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::BoxFuture;
use tonic::Status;
use tonic_prost::prost::Message;
use tonic_prost::ProstDecoder;

use super::kv::KvService;
use crate::node::Node;

/// First size of a call's read and write buffers: a put of a 32-byte key
/// and a 256-byte value, or a range answering it, fits. A larger request
/// grows the read buffer to its length at once (tonic reserves the length
/// its frame header gives); a larger answer is reserved at its encoded length.
const BUFFER_BYTES: usize = 512;
/// tonic's default (32 KiB); unary calls encode one message, so it is never
/// reached.
const YIELD_BYTES: usize = 32 * 1024;

/// The methods served here; `None` for every other path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
}

impl Method {
    fn of(path: &str) -> Option<Method> {
        Some(match path.strip_prefix("/etcdserverpb.KV/")? {
            "Put" => Method::Put,
            "Range" => Method::Range,
            "Txn" => Method::Txn,
            "DeleteRange" => Method::DeleteRange,
            "Compact" => Method::Compact,
            _ => return None,
        })
    }
}

/// `Server::builder().layer(KvUnaryLayer::new(..))`, after every other
/// layer, so it wraps the router only.
#[derive(Clone)]
pub(crate) struct KvUnaryLayer {
    kv: Arc<KvService>,
    /// Largest request accepted, framing included (as `KvServer`'s).
    max_decoding: usize,
}

impl KvUnaryLayer {
    pub(crate) fn new(node: Arc<Node>, max_decoding: usize) -> Self {
        KvUnaryLayer {
            kv: Arc::new(KvService(node)),
            max_decoding,
        }
    }
}

impl<S> tower::Layer<S> for KvUnaryLayer {
    type Service = KvUnary<S>;
    fn layer(&self, router: S) -> KvUnary<S> {
        KvUnary {
            kv: self.kv.clone(),
            max_decoding: self.max_decoding,
            router,
        }
    }
}

/// See [`KvUnaryLayer`].
#[derive(Clone)]
pub(crate) struct KvUnary<S> {
    kv: Arc<KvService>,
    max_decoding: usize,
    router: S,
}

impl<S> tower::Service<http::Request<Body>> for KvUnary<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Routed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.router.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // gRPC calls are POSTs; anything else keeps the router's handling.
        let method = (req.method() == http::Method::POST)
            .then(|| Method::of(req.uri().path()))
            .flatten();
        let Some(method) = method else {
            return Routed::Router(self.router.call(req));
        };
        let (kv, max) = (self.kv.clone(), self.max_decoding);
        Routed::Kv(Box::pin(
            async move { Ok(serve(&kv, max, method, req).await) },
        ))
    }
}

/// A call answered here, or by the router.
pub(crate) enum Routed<F> {
    Kv(BoxFuture<http::Response<Body>, Infallible>),
    Router(F),
}

impl<F> Future for Routed<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Routed::Kv(f) => f.as_mut().poll(cx),
            Routed::Router(f) => Pin::new(f).poll(cx),
        }
    }
}

async fn serve(
    kv: &KvService,
    max_decoding: usize,
    method: Method,
    req: http::Request<Body>,
) -> http::Response<Body> {
    match method {
        Method::Range => unary(max_decoding, req, move |r| kv.range_call(r)).await,
        Method::Put => unary(max_decoding, req, move |r| kv.put_call(r)).await,
        Method::DeleteRange => unary(max_decoding, req, move |r| kv.delete_range_call(r)).await,
        Method::Txn => unary(max_decoding, req, move |r| kv.txn_call(r)).await,
        Method::Compact => unary(max_decoding, req, move |r| kv.compact_call(r)).await,
    }
}

/// One unary call, as the generated server makes it (`KvServer` has no
/// compression enabled and encodes without a size limit).
async fn unary<Req, Resp, F, Fut>(
    max_decoding: usize,
    req: http::Request<Body>,
    handler: F,
) -> http::Response<Body>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: FnMut(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    tonic::server::Grpc::new(SmallCodec::<Resp, Req>(PhantomData))
        .apply_max_message_size_config(Some(max_decoding), Some(usize::MAX))
        .unary(Handler(handler), req)
        .await
}

/// A handler fn as tonic's `UnaryService` (through tower's `Service`), so
/// its future is not boxed.
struct Handler<F>(F);

impl<Req, Resp, F, Fut> tower::Service<tonic::Request<Req>> for Handler<F>
where
    F: FnMut(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    type Response = tonic::Response<Resp>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<Req>) -> Fut {
        (self.0)(req)
    }
}

/// Prost's codec with [`BUFFER_BYTES`] buffers.
struct SmallCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Codec for SmallCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = SizedEncoder<E>;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> SizedEncoder<E> {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> ProstDecoder<D> {
        ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }
}

/// Prost's encoding, into a buffer grown once to the message's length.
struct SizedEncoder<E>(PhantomData<fn(E)>);

impl<E: Message> Encoder for SizedEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        // Fails only without room, which the buffer grows to give.
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding a response: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_five_unary_kv_paths_are_served_here() {
        assert_eq!(Method::of("/etcdserverpb.KV/Put"), Some(Method::Put));
        assert_eq!(Method::of("/etcdserverpb.KV/Range"), Some(Method::Range));
        assert_eq!(Method::of("/etcdserverpb.KV/Txn"), Some(Method::Txn));
        assert_eq!(
            Method::of("/etcdserverpb.KV/DeleteRange"),
            Some(Method::DeleteRange)
        );
        assert_eq!(
            Method::of("/etcdserverpb.KV/Compact"),
            Some(Method::Compact)
        );
        for other in [
            "/etcdserverpb.KV/RangeStream",
            "/etcdserverpb.KV/Nope",
            "/etcdserverpb.KV/",
            "/etcdserverpb.KV/Put/",
            "/etcdserverpb.Lease/LeaseGrant",
            "/v3/kv/put",
            "/metrics",
        ] {
            assert_eq!(Method::of(other), None, "{other}");
        }
    }
}
