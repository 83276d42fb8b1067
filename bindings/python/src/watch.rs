//! Watches as Python iterators: `Watch` (blocking `for`) and `AsyncWatch`
//! (`async for`). Resume after disconnects is the Rust client's: the
//! iterator never sees a lost or repeated event; a compacted resume point
//! raises `CompactedError` and ends the watch. Each resume is reported
//! (`resumed_at`, `resume_count`, `on_resume` callbacks) before the events
//! of the revision it resumed from.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kv_client::WatchStream;
use pyo3::prelude::*;

use crate::errors::client_err;
use crate::runtime::{aenter_self, anext, awaitable, block, drop_in_runtime};
use crate::types::PyEvent;

/// What both watch classes share.
pub(crate) struct WatchInner {
    stream: tokio::sync::Mutex<Option<WatchStream>>,
    /// Events of the last batch not yet handed out (a batch holds every
    /// event of a revision; they go to Python one at a time).
    buffer: Mutex<VecDeque<PyEvent>>,
    cancel: tokio::sync::watch::Sender<bool>,
    watch_id: i64,
    /// How many times the watch resumed after a disconnect.
    resumes: AtomicI64,
    /// The revision of the last resume (0: none yet).
    resumed_at: AtomicI64,
    /// `on_resume` callbacks, called with the revision.
    on_resume: Mutex<Vec<Py<PyAny>>>,
}

impl WatchInner {
    pub(crate) fn new(stream: WatchStream) -> Arc<WatchInner> {
        Arc::new(WatchInner {
            watch_id: stream.watch_id(),
            stream: tokio::sync::Mutex::new(Some(stream)),
            buffer: Mutex::new(VecDeque::new()),
            cancel: tokio::sync::watch::channel(false).0,
            resumes: AtomicI64::new(0),
            resumed_at: AtomicI64::new(0),
            on_resume: Mutex::new(Vec::new()),
        })
    }

    /// Records a resume and runs the callbacks (on the reading thread,
    /// attached to Python; a raising callback is reported as unraisable).
    fn resumed(&self, revision: i64) {
        self.resumed_at.store(revision, Ordering::SeqCst);
        self.resumes.fetch_add(1, Ordering::SeqCst);
        let _ = crate::aio::attach_from_runtime(|py| {
            // Cloned first: a callback may add another one.
            let callbacks: Vec<Py<PyAny>> = self
                .on_resume
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|c| c.clone_ref(py))
                .collect();
            for cb in callbacks {
                if let Err(e) = cb.call1(py, (revision,)) {
                    e.write_unraisable(py, Some(cb.bind(py)));
                }
            }
        });
    }

    fn add_on_resume(&self, callback: Py<PyAny>) {
        self.on_resume
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(callback);
    }

    fn last_resume(&self) -> Option<i64> {
        Some(self.resumed_at.load(Ordering::SeqCst)).filter(|r| *r != 0)
    }

    fn pop(&self) -> Option<PyEvent> {
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// The next event, `None` once canceled or ended.
    async fn next(self: Arc<Self>) -> PyResult<Option<PyEvent>> {
        if let Some(e) = self.pop() {
            return Ok(Some(e));
        }
        let mut canceled = self.cancel.subscribe();
        let mut guard = self.stream.lock().await;
        // Another caller may have filled the buffer while we waited.
        if let Some(e) = self.pop() {
            return Ok(Some(e));
        }
        loop {
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            let item = tokio::select! {
                _ = canceled.wait_for(|c| *c) => None,
                item = stream.next() => Some(item),
            };
            match item {
                None | Some(None) => {
                    *guard = None;
                    return Ok(None);
                }
                Some(Some(Err(e))) => {
                    *guard = None;
                    return Err(client_err(e));
                }
                Some(Some(Ok(mut batch))) => {
                    if let Some(r) = batch.resumed_at() {
                        self.resumed(r);
                        continue;
                    }
                    let mut events = batch.take_events().into_iter().map(PyEvent::from);
                    let Some(first) = events.next() else {
                        continue; // a progress notification
                    };
                    self.buffer
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(events);
                    return Ok(Some(first));
                }
            }
        }
    }

    /// Cancels the watch: a waiting `next` returns, the server-side watch
    /// is canceled when the stream is dropped.
    fn cancel(&self) {
        self.cancel.send_replace(true);
        if let Ok(mut g) = self.stream.try_lock() {
            drop_in_runtime(g.take());
        }
    }
}

impl Drop for WatchInner {
    fn drop(&mut self) {
        drop_in_runtime(self.stream.get_mut().take());
    }
}

/// A watch class: the methods both kinds share, plus `$extra` (iteration
/// and context manager, blocking or asyncio). pyo3 takes one `#[pymethods]`
/// block per class, hence a macro rather than a shared impl.
macro_rules! watch_class {
    ($ty:ident, $name:literal, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[pyclass(module = "kvclient", name = $name)]
        pub(crate) struct $ty {
            inner: Arc<WatchInner>,
        }

        impl $ty {
            pub(crate) fn new(inner: Arc<WatchInner>) -> Self {
                $ty { inner }
            }
        }

        #[pymethods]
        impl $ty {
            /// The server's watch ID when the watch was created.
            ///
            /// >>> w.watch_id
            #[getter]
            fn watch_id(&self) -> i64 {
                self.inner.watch_id
            }
            /// Stops the watch; iteration ends.
            ///
            /// >>> w.cancel()
            fn cancel(&self) {
                self.inner.cancel();
            }
            /// The revision the watch last resumed from after a disconnect
            /// (every event before it was delivered), `None` if it never had to.
            ///
            /// >>> w.resumed_at
            #[getter]
            fn resumed_at(&self) -> Option<i64> {
                self.inner.last_resume()
            }
            /// How many times the watch resumed after a disconnect.
            ///
            /// >>> w.resume_count
            #[getter]
            fn resume_count(&self) -> i64 {
                self.inner.resumes.load(Ordering::SeqCst)
            }
            /// Calls `callback(revision)` each time the watch resumes after a
            /// disconnect, before the events of that revision are returned. It runs
            /// on the thread reading the watch (for `AsyncWatch`, a background
            /// thread, so hand over with `loop.call_soon_threadsafe`).
            ///
            /// >>> w.on_resume(lambda rev: print("resumed from", rev))
            fn on_resume(&self, callback: Py<PyAny>) {
                self.inner.add_on_resume(callback);
            }
            $($extra)*
        }
    };
}

watch_class!(
    PyWatch,
    "Watch",
    "A watch, iterated with `for event in watch`. `cancel()` (or leaving a\n`with` block) stops it; the iteration then ends.\n\n>>> with c.watch_prefix(\"config/\") as w:\n...     for event in w:\n...         print(event.type, event.key)",
    {
        fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }
        fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyEvent>> {
            if let Some(e) = self.inner.pop() {
                return Ok(Some(e));
            }
            let inner = self.inner.clone();
            block(py, inner.next())
        }
        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }
        #[pyo3(signature = (*_args))]
        fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
            self.inner.cancel();
            false
        }
    }
);

watch_class!(
    PyAsyncWatch,
    "AsyncWatch",
    "A watch, iterated with `async for event in watch`.\n\n>>> async for event in await client.watch_prefix(\"config/\"):\n...     print(event.type, event.key)",
    {
        fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }
        fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            anext(py, self.inner.clone().next())
        }
        fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
            aenter_self(slf)
        }
        #[pyo3(signature = (*_args))]
        fn __aexit__<'py>(
            &self,
            py: Python<'py>,
            _args: &Bound<'py, pyo3::types::PyTuple>,
        ) -> PyResult<Bound<'py, PyAny>> {
            self.inner.cancel();
            awaitable(py, async move { Ok(false) })
        }
    }
);
