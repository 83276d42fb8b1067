//! One event loop's completion queue: how a finished Rust future reaches
//! asyncio without its runtime thread ever entering Python.
//!
//! A runtime thread pushes (asyncio future, conversion of the result) and
//! writes one byte to a socket pair only when the queue goes from empty to
//! non-empty. The loop watches the other end (`add_reader`, once per loop)
//! and, on its own thread with the GIL it holds anyway, drains the whole
//! queue: converts each result and sets it. So one wake-up serves every
//! completion that arrived meanwhile, and no runtime thread waits for the
//! GIL (which, contended with the loop's thread, costs a switch interval
//! hand-off per completion) or races interpreter exit.
//!
//! Bounded: an entry exists only for an asyncio future still waiting for
//! its result, so the queue never holds more than the caller's own calls
//! in flight.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::{PyNotImplementedError, PyOSError};
use pyo3::intern;
use pyo3::prelude::*;

/// Turns a result into Python on the loop's thread: `Ok` is what
/// `set_result` gets, `Err` what `set_exception` gets.
pub(crate) type Convert = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<Py<PyAny>> + Send>;

struct Completion {
    fut: Py<PyAny>,
    convert: Convert,
}

/// The queue of one loop, shared by the runtime tasks completing on it.
pub(crate) struct Queue {
    pending: Mutex<Vec<Completion>>,
    /// Both ends live as long as the queue: a wake-up written after the
    /// loop went away lands in a buffer nobody reads (at most one byte,
    /// see `complete`), never on a closed socket (no SIGPIPE).
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl Queue {
    fn new() -> std::io::Result<Queue> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Queue {
            pending: Mutex::new(Vec::new()),
            wake_tx,
            wake_rx,
        })
    }

    /// Hands `fut`'s result to the loop. Called from runtime threads; takes
    /// no GIL and calls no Python.
    pub(crate) fn complete(&self, fut: Py<PyAny>, convert: Convert) {
        let was_empty = {
            // A poisoned lock only means a push panicked (out of memory):
            // the vector itself is intact.
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let was_empty = pending.is_empty();
            pending.push(Completion { fut, convert });
            was_empty
        };
        // Only the first completion of a batch wakes the loop; the drain
        // reads the wake-ups before it takes the batch, so a push after the
        // take finds the queue empty and writes again. WouldBlock cannot
        // lose a wake-up: the loop then has unread bytes already.
        if was_empty {
            let _ = (&self.wake_tx).write(&[1]);
        }
    }
}

/// The loop's reader callback: drains its queue.
#[pyclass(frozen, module = "kvclient")]
struct Drain {
    queue: Arc<Queue>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        // Wake-ups first, then the batch (see `Queue::complete`).
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.queue.wake_rx).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        let batch = std::mem::take(
            &mut *self
                .queue
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for c in batch {
            deliver(py, c);
        }
    }
}

/// Sets one result (the loop's thread, GIL held).
fn deliver(py: Python<'_>, c: Completion) {
    let Completion { fut, convert } = c;
    let fut = fut.bind(py);
    let (method, value) = match convert(py) {
        Ok(v) => (intern!(py, "set_result"), v),
        Err(e) => (intern!(py, "set_exception"), e.into_value(py).into_any()),
    };
    if let Err(e) = fut.call_method1(method, (value,)) {
        // InvalidStateError: cancelled meanwhile, nobody wants the result.
        let done = fut
            .call_method0(intern!(py, "done"))
            .and_then(|d| d.is_truthy())
            .unwrap_or(false);
        if !done {
            e.write_unraisable(py, Some(fut));
        }
    }
}

/// Where a loop keeps its `Drain` (so the reader is registered once).
const LOOP_ATTR: &str = "_kvclient_completions";

/// A loop and its queue (`None`: the loop cannot watch a descriptor).
type LoopEntry = (Py<PyAny>, Option<Arc<Queue>>);

thread_local! {
    /// The last loop this thread used. A strong reference: identity by
    /// pointer is only sound while the object is alive.
    static LAST: RefCell<Option<LoopEntry>> = const { RefCell::new(None) };
}

/// The queue of `event_loop` (made and registered with the loop on first
/// use), or `None` when the loop cannot watch a file descriptor
/// (`add_reader` raises `NotImplementedError`, e.g. a proactor loop).
pub(crate) fn queue_of(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<Queue>>> {
    let hit = LAST.with_borrow(|last| match last {
        Some((l, q)) if l.as_ptr() == event_loop.as_ptr() => Some(q.clone()),
        _ => None,
    });
    if let Some(q) = hit {
        return Ok(q);
    }
    let q = find_or_register(event_loop)?;
    let previous =
        LAST.with_borrow_mut(|last| last.replace((event_loop.clone().unbind(), q.clone())));
    // Outside the borrow: dropping a loop can run Python code.
    drop(previous);
    Ok(q)
}

fn find_or_register(event_loop: &Bound<'_, PyAny>) -> PyResult<Option<Arc<Queue>>> {
    let py = event_loop.py();
    let attr = intern!(py, LOOP_ATTR);
    if let Ok(found) = event_loop.getattr(attr)
        && let Ok(drain) = found.cast::<Drain>()
    {
        return Ok(Some(drain.get().queue.clone()));
    }
    let queue = Arc::new(Queue::new().map_err(|e| {
        PyOSError::new_err(format!(
            "kvclient: cannot make the asyncio completion queue: {e}"
        ))
    })?);
    let drain = Bound::new(
        py,
        Drain {
            queue: queue.clone(),
        },
    )?;
    // The loop's selector holds the callback (and so the queue and its
    // descriptors) until the reader is removed or the loop is closed.
    let fd = queue.wake_rx.as_raw_fd();
    match event_loop.call_method1(intern!(py, "add_reader"), (fd, &drain)) {
        Ok(_) => {}
        Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => return Ok(None),
        Err(e) => return Err(e),
    }
    // A loop without attributes (a C extension type) still works: it is
    // found through the thread's cache.
    let _ = event_loop.setattr(attr, &drain);
    Ok(Some(queue))
}

/// Forgets the thread's cached loop (in a forked child: the parent's loop
/// is not to be used there).
pub(crate) fn forget_cached_loop() {
    let previous = LAST.with_borrow_mut(Option::take);
    drop(previous);
}
