//! Rust futures as asyncio futures, made safe for interpreter exit.
//!
//! pyo3-async-runtimes completes its futures from runtime threads that
//! attach to Python; if that races with interpreter finalization, CPython
//! (3.11) ends the attaching thread with `pthread_exit` while Rust frames
//! still hold Python objects, and the process crashes at exit. So the
//! completion here is ours: it attaches only while the interpreter is not
//! shutting down, and an `atexit` hook (registered at import) waits for
//! completions already attached before finalization starts.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

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

/// Cancels the Rust task when the asyncio future is cancelled.
#[pyclass(frozen, module = "kvclient")]
struct CancelOnDone {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0("cancelled")?.is_truthy()? {
            self.task.abort();
        }
        Ok(())
    }
}

/// Hands a result to the asyncio future, on the loop's thread.
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

/// Runs `fut` on the runtime and returns an asyncio future for it (on the
/// running loop). Cancelling that future drops the Rust future.
pub(crate) fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let rt = runtime()?;
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let py_fut = event_loop.call_method0("create_future")?;
    let (loop_ref, fut_ref) = (event_loop.unbind(), py_fut.clone().unbind());
    let task = rt.spawn(async move {
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
    });
    let canceller = CancelOnDone {
        task: task.abort_handle(),
    };
    py_fut.call_method1(
        "add_done_callback",
        PyTuple::new(py, [canceller.into_py_any(py)?])?,
    )?;
    Ok(py_fut)
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
