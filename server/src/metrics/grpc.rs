//! go-grpc-prometheus' server series (grpc_server_started_total,
//! grpc_server_handled_total, grpc_server_handling_seconds) from one tower
//! layer on the client port, so no handler has to count anything. The code
//! comes from `grpc-status`: in the response headers (trailers-only
//! answers) or in the body's trailers; a stream the client drops before its
//! end counts as Canceled, as grpc-go reports it. The same layer counts the
//! bytes of calls' bodies (etcd_network_client_grpc_{received,sent}_bytes_total;
//! etcd counts encoded messages, kvd their gRPC frames, 5 bytes more each).
//!
//! Every call of one of kvd's methods counts into series resolved once per
//! method (and code), on first use: no label strings or registry look-ups
//! per call. A series appears on /metrics when its first call starts or
//! ends, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus::{Histogram, IntCounter};

/// grpc-go's names of the status codes (codes.Code.String()), by code.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const OK: usize = 0;
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// One of kvd's gRPC methods and its series, each resolved on first use.
struct Method {
    kind: &'static str,
    service: &'static str,
    name: &'static str,
    started: OnceLock<IntCounter>,
    handling: OnceLock<Histogram>,
    handled: [OnceLock<IntCounter>; CODES.len()],
}

impl Method {
    const fn new(kind: &'static str, service: &'static str, name: &'static str) -> Method {
        Method {
            kind,
            service,
            name,
            started: OnceLock::new(),
            handling: OnceLock::new(),
            handled: [const { OnceLock::new() }; CODES.len()],
        }
    }

    fn labels(&self) -> [&'static str; 3] {
        [self.kind, self.service, self.name]
    }

    fn started(&self) -> &IntCounter {
        self.started
            .get_or_init(|| super::get().grpc_started.with_label_values(&self.labels()))
    }

    fn handling(&self) -> &Histogram {
        self.handling
            .get_or_init(|| super::get().grpc_handling.with_label_values(&self.labels()))
    }

    fn handled(&self, code: usize) -> &IntCounter {
        self.handled[code].get_or_init(|| {
            let [kind, service, name] = self.labels();
            super::get()
                .grpc_handled
                .with_label_values(&[kind, service, name, CODES[code]])
        })
    }
}

const UNARY: &str = "unary";
const BIDI: &str = "bidi_stream";
const SERVER_STREAM: &str = "server_stream";

/// Every method of kvd's gRPC services (kv-proto's generated servers), the
/// hot KV ones first. RangeStream (a kvd extension) counts as unary, as it
/// always has.
static METHODS: [Method; 48] = [
    Method::new(UNARY, "etcdserverpb.KV", "Put"),
    Method::new(UNARY, "etcdserverpb.KV", "Range"),
    Method::new(UNARY, "etcdserverpb.KV", "Txn"),
    Method::new(UNARY, "etcdserverpb.KV", "DeleteRange"),
    Method::new(UNARY, "etcdserverpb.KV", "Compact"),
    Method::new(UNARY, "etcdserverpb.KV", "RangeStream"),
    Method::new(BIDI, "etcdserverpb.Watch", "Watch"),
    Method::new(BIDI, "etcdserverpb.Lease", "LeaseKeepAlive"),
    Method::new(UNARY, "etcdserverpb.Lease", "LeaseGrant"),
    Method::new(UNARY, "etcdserverpb.Lease", "LeaseRevoke"),
    Method::new(UNARY, "etcdserverpb.Lease", "LeaseTimeToLive"),
    Method::new(UNARY, "etcdserverpb.Lease", "LeaseLeases"),
    Method::new(UNARY, "etcdserverpb.Cluster", "MemberAdd"),
    Method::new(UNARY, "etcdserverpb.Cluster", "MemberRemove"),
    Method::new(UNARY, "etcdserverpb.Cluster", "MemberUpdate"),
    Method::new(UNARY, "etcdserverpb.Cluster", "MemberList"),
    Method::new(UNARY, "etcdserverpb.Cluster", "MemberPromote"),
    Method::new(UNARY, "etcdserverpb.Maintenance", "Alarm"),
    Method::new(UNARY, "etcdserverpb.Maintenance", "Status"),
    Method::new(UNARY, "etcdserverpb.Maintenance", "Defragment"),
    Method::new(UNARY, "etcdserverpb.Maintenance", "Hash"),
    Method::new(UNARY, "etcdserverpb.Maintenance", "HashKV"),
    Method::new(SERVER_STREAM, "etcdserverpb.Maintenance", "Snapshot"),
    Method::new(UNARY, "etcdserverpb.Maintenance", "MoveLeader"),
    Method::new(UNARY, "etcdserverpb.Maintenance", "Downgrade"),
    Method::new(UNARY, "etcdserverpb.Auth", "AuthEnable"),
    Method::new(UNARY, "etcdserverpb.Auth", "AuthDisable"),
    Method::new(UNARY, "etcdserverpb.Auth", "AuthStatus"),
    Method::new(UNARY, "etcdserverpb.Auth", "Authenticate"),
    Method::new(UNARY, "etcdserverpb.Auth", "UserAdd"),
    Method::new(UNARY, "etcdserverpb.Auth", "UserGet"),
    Method::new(UNARY, "etcdserverpb.Auth", "UserList"),
    Method::new(UNARY, "etcdserverpb.Auth", "UserDelete"),
    Method::new(UNARY, "etcdserverpb.Auth", "UserChangePassword"),
    Method::new(UNARY, "etcdserverpb.Auth", "UserGrantRole"),
    Method::new(UNARY, "etcdserverpb.Auth", "UserRevokeRole"),
    Method::new(UNARY, "etcdserverpb.Auth", "RoleAdd"),
    Method::new(UNARY, "etcdserverpb.Auth", "RoleGet"),
    Method::new(UNARY, "etcdserverpb.Auth", "RoleList"),
    Method::new(UNARY, "etcdserverpb.Auth", "RoleDelete"),
    Method::new(UNARY, "etcdserverpb.Auth", "RoleGrantPermission"),
    Method::new(UNARY, "etcdserverpb.Auth", "RoleRevokePermission"),
    Method::new(UNARY, "v3lockpb.Lock", "Lock"),
    Method::new(UNARY, "v3lockpb.Lock", "Unlock"),
    Method::new(UNARY, "v3electionpb.Election", "Campaign"),
    Method::new(UNARY, "v3electionpb.Election", "Proclaim"),
    Method::new(UNARY, "v3electionpb.Election", "Leader"),
    Method::new(SERVER_STREAM, "v3electionpb.Election", "Observe"),
];

/// What a call counts into.
enum Labels {
    Known(&'static Method),
    /// A method none of kvd's services has, on one of them (answered
    /// Unimplemented): labelled per call, as clients choose these names
    /// and a cache of them could grow without bound.
    Other {
        service: String,
        method: String,
    },
}

/// What a call to `path` counts into, or `None` for what is not a call to
/// one of kvd's gRPC services (HTTP routes, unknown services).
fn classify(path: &str) -> Option<Labels> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if let Some(m) = METHODS
        .iter()
        .find(|m| m.service == service && m.name == method)
    {
        return Some(Labels::Known(m));
    }
    let known = METHODS.iter().any(|m| m.service == service);
    if !known || method.is_empty() || method.contains('/') {
        return None;
    }
    Some(Labels::Other {
        service: service.to_string(),
        method: method.to_string(),
    })
}

/// The code of a `grpc-status` value; anything else is Unknown, as grpc-go
/// names codes it does not know.
fn code_of(code: &[u8]) -> usize {
    match code {
        [d @ b'0'..=b'9'] => usize::from(d - b'0'),
        [b'1', d @ b'0'..=b'6'] => 10 + usize::from(d - b'0'),
        _ => UNKNOWN,
    }
}

/// One call being counted; records `handled` exactly once.
struct Call {
    labels: Labels,
    start: Instant,
}

impl Call {
    fn start(labels: Labels) -> Call {
        match &labels {
            Labels::Known(m) => m.started().inc(),
            Labels::Other { service, method } => super::get()
                .grpc_started
                .with_label_values(&[UNARY, service, method])
                .inc(),
        }
        Call {
            labels,
            start: Instant::now(),
        }
    }

    fn finish(self, code: usize) {
        let took = self.start.elapsed().as_secs_f64();
        match &self.labels {
            Labels::Known(m) => {
                m.handled(code).inc();
                m.handling().observe(took);
            }
            Labels::Other { service, method } => {
                let s = super::get();
                s.grpc_handled
                    .with_label_values(&[UNARY, service, method, CODES[code]])
                    .inc();
                s.grpc_handling
                    .with_label_values(&[UNARY, service, method])
                    .observe(took);
            }
        }
    }
}

fn status_of(h: &HeaderMap) -> Option<usize> {
    h.get("grpc-status").map(|v| code_of(v.as_bytes()))
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

// Bodies are Unpin (tonic's Body is boxed already), so they are wrapped
// as they are, without another box each.
impl<S, B, RB> tower::Service<Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<Request<tonic::body::Body>, Response = Response<RB>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
    RB: Body<Data = Bytes> + Unpin + Send + 'static,
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
        let call = is_grpc
            .then(|| classify(req.uri().path()))
            .flatten()
            .map(Call::start);
        // A call's request bytes count as received from gRPC clients.
        let req = match call {
            Some(_) => req.map(|b| tonic::body::Body::new(Received(b))),
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
                    inner: b,
                    call: Some(call),
                })
            }))
        })
    }
}

/// A response body that records its call's code from the trailers.
struct CountedBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
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
                    call.finish(if frame.is_none() { OK } else { UNKNOWN });
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
struct Received<B>(B);

impl<B: Body<Data = Bytes> + Unpin> Body for Received<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.0).poll_frame(cx));
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
            call.finish(CANCELED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(path: &str) -> Option<(&'static str, String, String)> {
        match classify(path)? {
            Labels::Known(m) => Some((m.kind, m.service.to_string(), m.name.to_string())),
            Labels::Other { service, method } => Some((UNARY, service, method)),
        }
    }

    #[test]
    fn paths_map_to_go_grpc_prometheus_labels() {
        let (k, s, m) = labels("/etcdserverpb.KV/Range").unwrap();
        assert_eq!(
            (k, s.as_str(), m.as_str()),
            ("unary", "etcdserverpb.KV", "Range")
        );
        assert_eq!(
            labels("/etcdserverpb.Watch/Watch").unwrap().0,
            "bidi_stream"
        );
        assert_eq!(
            labels("/etcdserverpb.Lease/LeaseKeepAlive").unwrap().0,
            "bidi_stream"
        );
        assert_eq!(
            labels("/etcdserverpb.Maintenance/Snapshot").unwrap().0,
            "server_stream"
        );
        assert_eq!(
            labels("/v3electionpb.Election/Observe").unwrap().0,
            "server_stream"
        );
        // A method no service has, on a known service: counted as unary.
        let (k, s, m) = labels("/etcdserverpb.KV/Nope").unwrap();
        assert_eq!(
            (k, s.as_str(), m.as_str()),
            ("unary", "etcdserverpb.KV", "Nope")
        );
        assert!(labels("/etcdserverpb.KV/").is_none());
        assert!(labels("/etcdserverpb.KV/a/b").is_none());
        assert!(labels("/health").is_none());
        assert!(labels("/other.Svc/X").is_none());
    }

    #[test]
    fn status_codes_map_to_grpc_go_names() {
        assert_eq!(CODES[code_of(b"0")], "OK");
        assert_eq!(CODES[code_of(b"5")], "NotFound");
        assert_eq!(CODES[code_of(b"16")], "Unauthenticated");
        for odd in [
            &b"17"[..],
            b"",
            b"x",
            b"-1",
            b"+1",
            b"01",
            b"99999999999999999999",
        ] {
            assert_eq!(CODES[code_of(odd)], "Unknown", "{odd:?}");
        }
    }

    #[test]
    fn cached_series_are_the_registered_ones() {
        let Some(Labels::Known(m)) = classify("/etcdserverpb.KV/Compact") else {
            panic!("Compact is one of kvd's methods");
        };
        let s = crate::metrics::get();
        let labels = ["unary", "etcdserverpb.KV", "Compact"];
        let before = s.grpc_started.with_label_values(&labels).get();
        Call::start(Labels::Known(m)).finish(code_of(b"9"));
        assert_eq!(s.grpc_started.with_label_values(&labels).get(), before + 1);
        let handled = ["unary", "etcdserverpb.KV", "Compact", "FailedPrecondition"];
        assert!(s.grpc_handled.with_label_values(&handled).get() >= 1);
        assert!(
            s.grpc_handling
                .with_label_values(&labels)
                .get_sample_count()
                >= 1
        );
    }

    #[test]
    fn the_table_has_every_generated_method_once() {
        for (i, a) in METHODS.iter().enumerate() {
            for b in &METHODS[i + 1..] {
                assert!(
                    (a.service, a.name) != (b.service, b.name),
                    "{}/{} twice",
                    a.service,
                    a.name
                );
            }
        }
    }
}
