//! go-grpc-prometheus' server series (grpc_server_started_total,
//! grpc_server_handled_total, grpc_server_handling_seconds) from one tower
//! layer on the client port, so no handler has to count anything. The code
//! comes from `grpc-status`: in the response headers (trailers-only
//! answers) or in the body's trailers; a stream the client drops before its
//! end counts as Canceled, as grpc-go reports it. The same layer counts the
//! bytes of calls' bodies (etcd_network_client_grpc_{received,sent}_bytes_total;
//! etcd counts encoded messages, kvd their gRPC frames, 5 bytes more each).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};

/// The RPC types and names of a call, or `None` for what is not one of
/// kvd's gRPC methods (HTTP routes, unknown services).
fn classify(path: &str) -> Option<(&'static str, String, String)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    const SERVICES: [&str; 8] = [
        "etcdserverpb.KV",
        "etcdserverpb.Watch",
        "etcdserverpb.Lease",
        "etcdserverpb.Cluster",
        "etcdserverpb.Maintenance",
        "etcdserverpb.Auth",
        "v3lockpb.Lock",
        "v3electionpb.Election",
    ];
    if !SERVICES.contains(&service) || method.is_empty() || method.contains('/') {
        return None;
    }
    let kind = match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => {
            "server_stream"
        }
        _ => "unary",
    };
    Some((kind, service.to_string(), method.to_string()))
}

/// grpc-go's name of a status code (codes.Code.String()).
fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "Canceled",
        b"2" => "Unknown",
        b"3" => "InvalidArgument",
        b"4" => "DeadlineExceeded",
        b"5" => "NotFound",
        b"6" => "AlreadyExists",
        b"7" => "PermissionDenied",
        b"8" => "ResourceExhausted",
        b"9" => "FailedPrecondition",
        b"10" => "Aborted",
        b"11" => "OutOfRange",
        b"12" => "Unimplemented",
        b"13" => "Internal",
        b"14" => "Unavailable",
        b"15" => "DataLoss",
        b"16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// One call being counted; records `handled` exactly once.
struct Call {
    labels: [String; 3],
    start: Instant,
}

impl Call {
    fn finish(self, code: &'static str) {
        let s = super::get();
        let [kind, service, method] = &self.labels;
        let l = [kind.as_str(), service.as_str(), method.as_str()];
        s.grpc_handled
            .with_label_values(&[l[0], l[1], l[2], code])
            .inc();
        s.grpc_handling
            .with_label_values(&l)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

fn status_of(h: &HeaderMap) -> Option<&'static str> {
    h.get("grpc-status").map(|v| code_name(v.as_bytes()))
}

/// The layer: `Server::builder().layer(GrpcMetricsLayer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics(inner)
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S>(S);

impl<S, B, RB> tower::Service<Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<Request<tonic::body::Body>, Response = Response<RB>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let is_grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let call =
            is_grpc
                .then(|| classify(req.uri().path()))
                .flatten()
                .map(|(kind, service, method)| {
                    super::get()
                        .grpc_started
                        .with_label_values(&[kind, &service, &method])
                        .inc();
                    Call {
                        labels: [kind.to_string(), service, method],
                        start: Instant::now(),
                    }
                });
        // A call's request bytes count as received from gRPC clients.
        let req = match call {
            Some(_) => req.map(|b| tonic::body::Body::new(Received(Box::pin(b)))),
            None => req.map(tonic::body::Body::new),
        };
        let fut = self.0.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let Some(call) = call else {
                return Ok(resp.map(tonic::body::Body::new));
            };
            if let Some(code) = status_of(resp.headers()) {
                call.finish(code);
                return Ok(resp.map(tonic::body::Body::new));
            }
            Ok(resp.map(|b| {
                tonic::body::Body::new(CountedBody {
                    inner: Box::pin(b),
                    call: Some(call),
                })
            }))
        })
    }
}

/// A response body that records its call's code from the trailers.
struct CountedBody<B> {
    inner: Pin<Box<B>>,
    call: Option<Call>,
}

impl<B: Body<Data = Bytes>> Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(self.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    super::client_sent(d.len());
                }
                if let Some(code) = f.trailers_ref().and_then(status_of) {
                    if let Some(call) = self.call.take() {
                        call.finish(code);
                    }
                }
            }
            // An error ends the stream; grpc-go would answer Unknown.
            Some(Err(_)) | None => {
                if let Some(call) = self.call.take() {
                    call.finish(if frame.is_none() { "OK" } else { "Unknown" });
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A call's request body, counting its bytes
/// (etcd_network_client_grpc_received_bytes_total).
struct Received<B>(Pin<Box<B>>);

impl<B: Body<Data = Bytes>> Body for Received<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(self.0.as_mut().poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(d) = f.data_ref() {
                super::client_received(d.len());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        // Dropped before its trailers: the client went away.
        if let Some(call) = self.call.take() {
            call.finish("Canceled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_go_grpc_prometheus_labels() {
        let (k, s, m) = classify("/etcdserverpb.KV/Range").unwrap();
        assert_eq!(
            (k, s.as_str(), m.as_str()),
            ("unary", "etcdserverpb.KV", "Range")
        );
        assert_eq!(
            classify("/etcdserverpb.Watch/Watch").unwrap().0,
            "bidi_stream"
        );
        assert_eq!(
            classify("/v3electionpb.Election/Observe").unwrap().0,
            "server_stream"
        );
        assert!(classify("/health").is_none());
        assert!(classify("/other.Svc/X").is_none());
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"16"), "Unauthenticated");
    }
}
