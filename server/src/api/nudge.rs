//! One write per connection for the answers one event completes: unary
//! calls ([`NudgeLayer`]) and stream messages (Watch, LeaseKeepAlive:
//! [`Handed`]).
//!
//! Every gRPC call is a task of its own (hyper's), and its response frames
//! go out through the connection's HTTP/2 task, which the call's task wakes
//! when it hands them over. tokio runs a task woken that way right after the
//! one that woke it (its LIFO slot), ahead of the other calls the same event
//! woke (a raft entry applied, a read index reached: up to all 64 clients'
//! calls at once), so the connection wrote nearly every answer in a
//! `sendto` of its own. [`NudgeLayer`] wakes an idle no-op task when a
//! response body is dropped (hyper drops it in the call's task, right after
//! handing over its last frame): that task takes the LIFO slot and moves the
//! connection task to the back of the run queue, behind the other calls,
//! and the connection then writes all their frames at once (grpc-go's
//! writer yields before it flushes for the same reason). Where there is no
//! LIFO slot, or no idle nudge task, nothing changes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http::Response;
use http_body::{Body, Frame, SizeHint};

/// No-op tasks per worker thread that [`nudge`] wakes: one suffices while
/// it runs right after the waking task; a second covers one not yet run.
const NUDGE_TASKS: usize = 2;

/// One no-op task's side of the handshake.
#[derive(Default)]
struct Nudger {
    waker: AtomicWaker,
    /// The task is parked and may be woken.
    idle: AtomicBool,
    /// The task was dropped (its runtime shut down).
    gone: AtomicBool,
}

thread_local! {
    /// This thread's no-op tasks: a thread runs one runtime at a time, so
    /// they are always of the runtime that wakes them.
    static NUDGERS: RefCell<Vec<Arc<Nudger>>> = const { RefCell::new(Vec::new()) };
}

/// Sends the connection's writer behind the other calls and streams that
/// have frames to hand over, so it writes them in one go (see the module
/// docs). Called right after a frame was handed to the connection: by a
/// unary call's dropped body ([`NudgeLayer`]), and by Watch and
/// LeaseKeepAlive streams once [`Handed`] says their frame went. Without a
/// LIFO slot, or an idle no-op task, nothing changes.
pub(crate) fn nudge() {
    NUDGERS.with_borrow_mut(|tasks| {
        tasks.retain(|t| !t.gone.load(Ordering::Acquire));
        if let Some(t) = tasks.iter().find(|t| t.idle.swap(false, Ordering::AcqRel)) {
            t.waker.wake();
            return;
        }
        if tasks.len() < NUDGE_TASKS {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            // A new task is scheduled as a woken one is: this nudges too.
            let t = Arc::new(Nudger::default());
            rt.spawn(nudge_task(t.clone()));
            tasks.push(t);
        }
    });
}

/// Does nothing each time it is woken: being woken is its whole job. It
/// lives as long as its runtime.
async fn nudge_task(me: Arc<Nudger>) {
    /// Marks the task gone when the runtime drops it.
    struct Gone(Arc<Nudger>);
    impl Drop for Gone {
        fn drop(&mut self) {
            self.0.gone.store(true, Ordering::Release);
        }
    }
    let _gone = Gone(me.clone());
    std::future::poll_fn(|cx| {
        me.waker.register(cx.waker());
        me.idle.store(true, Ordering::Release);
        Poll::<()>::Pending
    })
    .await
}

/// How far a stream's last answers went, as polls of the stream show it
/// (tonic polls the stream again after ending a batch of messages and
/// again after handing its frame over).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Handed {
    /// Nothing answered since the last hand-over.
    Idle,
    /// Answers taken; tonic's next poll ends their batch (its frame goes
    /// to the connection after that).
    Taken,
    /// The batch was ended: the poll after it comes after the frame was
    /// handed to the connection.
    Ended,
}

impl Handed {
    /// The state after a poll that found nothing to answer; [`nudge`]s
    /// (and says so) when the frame of the last answers has just been
    /// handed over.
    pub(crate) fn pending(&mut self) -> bool {
        let (next, handed_over) = match *self {
            Handed::Taken => (Handed::Ended, false),
            Handed::Ended => (Handed::Idle, true),
            Handed::Idle => (Handed::Idle, false),
        };
        *self = next;
        if handed_over {
            nudge();
        }
        handed_over
    }
}

/// Wraps each response body so that dropping it nudges (see the module
/// docs): `Server::builder().layer(NudgeLayer)`, outermost (it needs an
/// `Unpin` inner future, as the metrics layer's boxed one is).
#[derive(Clone, Copy, Default)]
pub(crate) struct NudgeLayer;

impl<S> tower::Layer<S> for NudgeLayer {
    type Service = NudgeService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NudgeService { inner }
    }
}

/// See [`NudgeLayer`].
#[derive(Clone)]
pub(crate) struct NudgeService<S> {
    inner: S,
}

impl<S, R> tower::Service<R> for NudgeService<S>
where
    S: tower::Service<R, Response = Response<tonic::body::Body>>,
    S::Future: Unpin,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = NudgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        NudgeFuture {
            inner: self.inner.call(req),
        }
    }
}

/// The response of a [`NudgeService`] call, its body wrapped.
pub(crate) struct NudgeFuture<F> {
    inner: F,
}

impl<F, E> Future for NudgeFuture<F>
where
    F: Future<Output = Result<Response<tonic::body::Body>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let resp = std::task::ready!(Pin::new(&mut self.inner).poll(cx))?;
        // A body already at its end (a trailers-only answer: an error) is
        // dropped by tonic before hyper sends anything: no nudge for it.
        if resp.body().is_end_stream() {
            return Poll::Ready(Ok(resp));
        }
        Poll::Ready(Ok(
            resp.map(|inner| tonic::body::Body::new(NudgeBody { inner }))
        ))
    }
}

/// A response body that nudges when dropped.
struct NudgeBody {
    inner: tonic::body::Body,
}

impl Body for NudgeBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for NudgeBody {
    fn drop(&mut self) {
        nudge();
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use http_body_util::Full;
    use tokio::sync::oneshot;
    use tower::{Layer, Service, ServiceExt};

    use super::*;

    fn respond(_: ()) -> std::future::Ready<Result<Response<tonic::body::Body>, Infallible>> {
        let body = tonic::body::Body::new(Full::new(Bytes::from_static(b"x")));
        std::future::ready(Ok(Response::new(body)))
    }

    /// Runs one call whose task wakes a parked "connection" task and then
    /// drops the response body (as hyper's stream task does after handing
    /// its last frame over), with another task queued before it; returns
    /// the order in which the three ran.
    fn order_of_tasks(layer: bool) -> Vec<&'static str> {
        // One worker: which task runs next is decided by tokio's run queue
        // and LIFO slot alone.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let driver = rt.spawn(async move {
            let mut svc = NudgeLayer.layer(tower::service_fn(respond));
            let mut plain = tower::service_fn(respond);
            let mut call = async || {
                if layer {
                    svc.ready().await.unwrap().call(()).await.unwrap()
                } else {
                    plain.ready().await.unwrap().call(()).await.unwrap()
                }
            };
            // Spawns the nudge tasks and lets them go idle.
            drop(call().await);
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            let resp = call().await;

            // The connection task: parked until a call wakes it.
            let (wake_conn, conn_woken) = oneshot::channel::<()>();
            let oc = o.clone();
            let conn = tokio::spawn(async move {
                let _ = conn_woken.await;
                oc.lock().unwrap().push("conn");
            });
            tokio::task::yield_now().await;
            // Queued first: another call the same event completed.
            let oo = o.clone();
            let other = tokio::spawn(async move { oo.lock().unwrap().push("other") });
            // Spawned last, so it runs first (LIFO slot). Detached, as
            // hyper's stream tasks are: its end wakes no one.
            let oc = o.clone();
            drop(tokio::spawn(async move {
                oc.lock().unwrap().push("call");
                let _ = wake_conn.send(());
                drop(resp);
            }));
            let _ = tokio::join!(other, conn);
        });
        rt.block_on(driver).unwrap();
        let out = order.lock().unwrap().clone();
        out
    }

    #[test]
    fn a_dropped_body_puts_the_woken_task_behind_the_queued_ones() {
        // Without the layer the woken connection task runs right after the
        // call (this is what made one write per answer); with it, after
        // the other call.
        assert_eq!(order_of_tasks(false), ["call", "conn", "other"]);
        assert_eq!(order_of_tasks(true), ["call", "other", "conn"]);
    }

    /// Stand-in for a connection's HTTP/2 task: it writes, in one go, every
    /// frame handed over since it last ran.
    #[derive(Default)]
    struct Conn {
        waker: AtomicWaker,
        parked: AtomicBool,
        handed: AtomicUsize,
        written: AtomicUsize,
        writes: AtomicUsize,
    }

    const STREAMS: usize = 8;

    /// How many writes the connection makes for one answer from each of
    /// `STREAMS` stream tasks woken together (as one read of the connection
    /// wakes them), each nudging after its hand-over or not.
    fn writes(nudged: bool) -> usize {
        // One worker: its LIFO slot decides the order, with no stealing.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        rt.block_on(async move {
            tokio::spawn(async move {
                let conn = Arc::new(Conn::default());
                let c = conn.clone();
                let writer = tokio::spawn(std::future::poll_fn(move |cx| {
                    c.waker.register(cx.waker());
                    c.parked.store(true, Ordering::Release);
                    let n = c.handed.swap(0, Ordering::AcqRel);
                    if n > 0 {
                        c.writes.fetch_add(1, Ordering::AcqRel);
                    }
                    if c.written.fetch_add(n, Ordering::AcqRel) + n == STREAMS {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }));
                while !conn.parked.load(Ordering::Acquire) {
                    tokio::task::yield_now().await;
                }
                for _ in 0..STREAMS {
                    let c = conn.clone();
                    tokio::spawn(async move {
                        c.handed.fetch_add(1, Ordering::AcqRel);
                        c.waker.wake();
                        if nudged {
                            nudge();
                        }
                    });
                }
                writer.await.expect("writer");
                conn.writes.load(Ordering::Acquire)
            })
            .await
            .expect("test task")
        })
    }

    // Streams woken by one read of their connection (LeaseKeepAlive, Watch):
    // without the nudge the connection writes each answer on its own (the
    // cost nudge() removes); with it, all of them at once.
    #[test]
    fn nudge_lets_the_connection_write_once() {
        assert_eq!(writes(false), STREAMS);
        assert_eq!(writes(true), 1);
    }

    #[test]
    fn hand_over_is_the_second_pending_poll_after_an_answer() {
        let mut h = Handed::Taken;
        assert!(!h.pending());
        assert_eq!(h, Handed::Ended);
        assert!(h.pending());
        assert_eq!(h, Handed::Idle);
        assert!(!h.pending());
        assert_eq!(h, Handed::Idle);
    }
}
