//! Rust futures as asyncio futures, made safe for interpreter exit.
//!
//! A finished Rust future goes through its loop's completion queue
//! (`queue`): the runtime thread never enters Python, and the loop's
//! thread sets results in batches. A loop that cannot watch a file
//! descriptor (no `add_reader`) gets the fallback: the runtime thread
//! attaches to Python and calls `call_soon_threadsafe` per result.
//!
//! Attaching from a runtime thread (that fallback, and the `on_lost` /
//! `on_resume` callbacks) must not race interpreter finalization: CPython
//! (3.11) ends a thread attaching then with `pthread_exit` while Rust
//! frames still hold Python objects, and the process crashes at exit. So
//! it attaches only while the interpreter is not shutting down, and an
//! `atexit` hook (registered at import) waits for attached threads before
//! finalization starts.

#[cfg(unix)]
mod queue;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::IntoPyObjectExt;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::runtime::runtime;

/// Set by the `atexit` hook: from then on nothing attaches to Python.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
/// Runtime threads attached to Python (or about to) right now.
static ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// How long the exit hook waits for attached completions (they only hand a
/// result to the event loop, so this is a bound, not an expected wait).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Runs `f` attached to Python from a runtime thread, unless the
/// interpreter is exiting (then `None`).
pub(crate) fn attach_from_runtime<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    ATTACHED.fetch_add(1, Ordering::SeqCst);
    let r = if SHUTTING_DOWN.load(Ordering::SeqCst) {
        None
    } else {
        Python::try_attach(f)
    };
    ATTACHED.fetch_sub(1, Ordering::SeqCst);
    r
}

/// The `atexit` hook: stop attaching, then wait (GIL released) for the
/// threads that already are.
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + EXIT_WAIT;
    py.detach(|| {
        while ATTACHED.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Cancels the Rust task when the asyncio future is done: it is done
/// either because the task set its result (then the task has finished and
/// aborting it does nothing) or because it was cancelled.
#[pyclass(frozen, module = "kvclient")]
struct CancelOnDone {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, _fut: &Bound<'_, PyAny>) {
        self.task.abort();
    }
}

/// Hands a result to the asyncio future, on the loop's thread (the
/// fallback for loops without `add_reader`).
#[pyclass(frozen, module = "kvclient")]
struct SetResult {
    fut: Py<PyAny>,
    value: Py<PyAny>,
    is_error: bool,
}

#[pymethods]
impl SetResult {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        // Cancelled meanwhile: nobody wants the result.
        if fut.call_method0("done")?.is_truthy()? {
            return Ok(());
        }
        let method = if self.is_error {
            "set_exception"
        } else {
            "set_result"
        };
        fut.call_method1(method, (self.value.clone_ref(py),))?;
        Ok(())
    }
}

/// `asyncio.get_running_loop`, looked up once.
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Runs `fut` on the runtime and returns an asyncio future for it (on the
/// running loop). Cancelling that future drops the Rust future.
pub(crate) fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let rt = runtime()?;
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let py_fut = event_loop.call_method0(intern!(py, "create_future"))?;
    let fut_ref = py_fut.clone().unbind();
    // Boxed: the task then holds a pointer, not the whole (kilobytes large)
    // future, which tokio would otherwise copy when spawning and finishing.
    let task = match loop_queue(&event_loop)? {
        #[cfg(unix)]
        Some(queue) => rt.spawn(Box::pin(async move {
            let result = fut.await;
            queue.complete(
                fut_ref,
                Box::new(move |py: Python<'_>| result.and_then(|v| v.into_py_any(py))),
            );
        })),
        #[cfg(not(unix))]
        Some(never) => match never {},
        None => {
            let loop_ref = event_loop.unbind();
            rt.spawn(Box::pin(async move {
                let result = fut.await;
                attach_from_runtime(|py| {
                    let (value, is_error) = match result.and_then(|v| v.into_py_any(py)) {
                        Ok(v) => (v, false),
                        Err(e) => (e.into_value(py).into_any(), true),
                    };
                    let setter = SetResult {
                        fut: fut_ref,
                        value,
                        is_error,
                    };
                    // A closed loop refuses: nobody is waiting then.
                    let _ = loop_ref.call_method1(py, "call_soon_threadsafe", (setter,));
                });
            }))
        }
    };
    let canceller = Bound::new(
        py,
        CancelOnDone {
            task: task.abort_handle(),
        },
    )?;
    py_fut.call_method1(intern!(py, "add_done_callback"), (canceller,))?;
    Ok(py_fut)
}

/// The running loop's completion queue; `None`: use the fallback.
#[cfg(unix)]
fn loop_queue(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<std::sync::Arc<queue::Queue>>> {
    queue::queue_of(event_loop)
}

/// No socket pair to watch: every loop takes the fallback.
#[cfg(not(unix))]
fn loop_queue(_event_loop: &Bound<'_, PyAny>) -> PyResult<Option<std::convert::Infallible>> {
    Ok(None)
}

/// In a forked child: forget the parent's loops.
pub(crate) fn after_fork_in_child() {
    #[cfg(unix)]
    queue::forget_cached_loop();
}

/// `__aenter__` for classes whose `async with` yields the object itself.
pub(crate) fn aenter_self<'py, T: pyo3::PyClass>(
    slf: Bound<'py, T>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let me = slf.unbind();
    awaitable(py, async move { Ok(me) })
}

/// `__anext__` over a stream's next item: `None` ends the `async for`.
pub(crate) fn anext<'py, T, F>(py: Python<'py>, next: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<Option<T>>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    awaitable(py, async move {
        next.await?
            .ok_or_else(|| pyo3::exceptions::PyStopAsyncIteration::new_err(()))
    })
}
