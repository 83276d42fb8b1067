//! The one tokio runtime the module owns, and the two ways Python waits on
//! it: blocking (GIL released, Ctrl-C checked) and asyncio (an awaitable).

use std::future::Future;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

pub(crate) use crate::aio::{aenter_self, anext, awaitable};

/// How often a blocked call wakes up to look for Ctrl-C (Python only runs
/// signal handlers between bytecodes, so a native wait must poll).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The current runtime (null until first use, and again in a forked
/// child). An atomic, not a lock: a lock held by a parent thread at fork
/// time would stay locked forever in the child.
static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());

/// The module's runtime, built on first use. It is never dropped: its
/// worker threads hold no Python state, so interpreter exit (or a process
/// exit while streams are live) does not wait for them.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    let current = RUNTIME.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: set only from a leaked Box below, never freed.
        return Ok(unsafe { &*current });
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kvclient-io")
        .enable_all()
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the kvclient runtime: {e}")))?;
    let fresh = Box::into_raw(Box::new(built));
    match RUNTIME.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            // SAFETY: just leaked; lives for the process.
            let rt: &'static Runtime = unsafe { &*fresh };
            Ok(rt)
        }
        Err(winner) => {
            // Another thread built one first; ours never ran a task.
            // SAFETY: `fresh` came from Box::into_raw above and was not shared.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: as above for the winner.
            Ok(unsafe { &*winner })
        }
    }
}

/// Called in a forked child (`os.register_at_fork`): the parent's runtime
/// threads do not exist here, so the next call builds a new runtime. The
/// old one is leaked on purpose (dropping it would wait for threads that
/// will never answer). The parent's event loops are forgotten too.
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    RUNTIME.store(std::ptr::null_mut(), Ordering::Release);
    crate::aio::after_fork_in_child();
}

/// Runs `fut` on the runtime and blocks the calling thread until it is
/// done, without holding the GIL. Ctrl-C (any pending Python signal whose
/// handler raises) cancels the Rust future and raises in Python.
pub(crate) fn block<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        // Called from a runtime thread (e.g. a callback): `block_on` would
        // panic there, so run it as a task and wait on a channel.
        return block_spawned(py, rt, fut);
    }
    // Drive the future on this thread: no task hand-off per call. It wakes
    // every SIGNAL_POLL to let Python run signal handlers.
    let mut fut = Box::pin(fut);
    loop {
        let (back, answer) = py.detach(move || {
            // The timer must be made inside the runtime's context.
            let answer = rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut fut).await });
            (fut, answer)
        });
        fut = back;
        match answer {
            Ok(result) => return result,
            // Dropping `fut` on return cancels the operation.
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// [`block`] for runtime threads: the future runs as a task.
fn block_spawned<T, F>(py: Python<'_>, rt: &'static Runtime, fut: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    let task = rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let mut rx = rx;
    loop {
        let (back, answer) = py.detach(move || {
            let answer = rx.recv_timeout(SIGNAL_POLL);
            (rx, answer)
        });
        rx = back;
        match answer {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    task.abort();
                    return Err(e);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "kvclient: the operation's task stopped without an answer",
                ));
            }
        }
    }
}

/// Like [`block`], converting the answer to a Python object (so sync and
/// async methods can share one body, see `dual`).
pub(crate) fn block_py<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let value = block(py, fut)?;
    value.into_bound_py_any(py)
}

/// Drops a value inside the runtime's context, so that `Drop` impls of the
/// Rust crates that spawn cleanup (unlock, resign, revoke) find a runtime
/// even when Python's garbage collector runs them on its own thread.
pub(crate) fn drop_in_runtime<T>(value: T) {
    match runtime() {
        Ok(rt) => {
            let _guard = rt.enter();
            drop(value);
        }
        Err(_) => drop(value),
    }
}
