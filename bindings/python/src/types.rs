//! Result objects handed to Python: small frozen classes with `bytes`
//! fields and `str` views, and the `str | bytes` argument type.

use kv_client::{DeleteResponse, GetResponse, PutResponse};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

/// A key or value argument: `str` (sent as UTF-8) or `bytes`.
pub(crate) struct Bin(pub Vec<u8>);

impl<'a, 'py> FromPyObject<'a, 'py> for Bin {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Bin(b.as_bytes().to_vec()));
        }
        if let Ok(s) = obj.cast::<PyString>() {
            return Ok(Bin(s.to_cow()?.as_bytes().to_vec()));
        }
        if let Ok(b) = obj.cast::<PyByteArray>() {
            return Ok(Bin(b.to_vec()));
        }
        Err(PyTypeError::new_err(format!(
            "expected str or bytes, got {}",
            obj.get_type().name()?
        )))
    }
}

fn text(py: Python<'_>, b: &[u8]) -> PyResult<String> {
    match std::str::from_utf8(b) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => Err(PyErr::from_value(
            pyo3::exceptions::PyUnicodeDecodeError::new_utf8(py, b, e)?.into_any(),
        )),
    }
}

/// A stored key-value. `key`/`value` are bytes; `key_text`/`text` decode
/// them as UTF-8.
///
/// >>> kv = c.get("config/db")
/// >>> kv.value, kv.text, kv.mod_revision
#[pyclass(frozen, module = "kvclient", name = "KeyValue")]
#[derive(Clone, Debug)]
pub(crate) struct PyKeyValue {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    /// Revision of the key's creation.
    #[pyo3(get)]
    pub(crate) create_revision: i64,
    /// Revision of the key's last change.
    #[pyo3(get)]
    pub(crate) mod_revision: i64,
    /// Number of changes since creation (1 after the first put).
    #[pyo3(get)]
    pub(crate) version: i64,
    /// ID of the lease attached, 0 for none.
    #[pyo3(get)]
    pub(crate) lease: i64,
}

impl From<kv_client::KeyValue> for PyKeyValue {
    fn from(kv: kv_client::KeyValue) -> Self {
        PyKeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

#[pymethods]
impl PyKeyValue {
    /// The key.
    ///
    /// >>> kv.key
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key)
    }
    /// The value.
    ///
    /// >>> kv.value
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.value)
    }
    /// The key decoded as UTF-8.
    ///
    /// >>> kv.key_text
    #[getter]
    fn key_text(&self, py: Python<'_>) -> PyResult<String> {
        text(py, &self.key)
    }
    /// The value decoded as UTF-8.
    ///
    /// >>> kv.text
    #[getter]
    fn text(&self, py: Python<'_>) -> PyResult<String> {
        text(py, &self.value)
    }
    fn __repr__(&self) -> String {
        format!(
            "KeyValue(key={:?}, value={:?}, mod_revision={}, version={})",
            String::from_utf8_lossy(&self.key),
            String::from_utf8_lossy(&self.value),
            self.mod_revision,
            self.version
        )
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyKeyValue>().is_ok_and(|o| {
            let o = o.get();
            (
                &o.key,
                &o.value,
                o.create_revision,
                o.mod_revision,
                o.version,
                o.lease,
            ) == (
                &self.key,
                &self.value,
                self.create_revision,
                self.mod_revision,
                self.version,
                self.lease,
            )
        })
    }
}

fn kvs(v: &[kv_client::KeyValue]) -> Vec<PyKeyValue> {
    v.iter().cloned().map(PyKeyValue::from).collect()
}

/// The answer to a range read: the key-values (iterable), the store
/// revision, the total count and whether more keys matched than returned.
///
/// >>> r = c.get_prefix("config/", limit=10)
/// >>> r.count, r.more, [kv.key for kv in r]
#[pyclass(frozen, module = "kvclient", name = "GetResult")]
#[derive(Clone, Debug)]
pub(crate) struct PyGetResult {
    /// The key-values found.
    #[pyo3(get)]
    pub(crate) kvs: Vec<PyKeyValue>,
    /// The store revision the read was served at.
    #[pyo3(get)]
    pub(crate) revision: i64,
    /// How many keys matched (with `count_only` or a limit, more than `len(kvs)`).
    #[pyo3(get)]
    pub(crate) count: i64,
    /// Whether more keys matched than the limit returned.
    #[pyo3(get)]
    pub(crate) more: bool,
}

impl From<GetResponse> for PyGetResult {
    fn from(r: GetResponse) -> Self {
        PyGetResult {
            kvs: kvs(r.kvs()),
            revision: r.revision(),
            count: r.count(),
            more: r.more(),
        }
    }
}

#[pymethods]
impl PyGetResult {
    fn __len__(&self) -> usize {
        self.kvs.len()
    }
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyIterator>> {
        pyo3::types::PyList::new(py, self.kvs.clone())?.try_iter()
    }
    fn __getitem__(&self, i: isize) -> PyResult<PyKeyValue> {
        let n = self.kvs.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if j < 0 || j >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err(
                "index out of range",
            ));
        }
        Ok(self.kvs[j as usize].clone())
    }
    fn __repr__(&self) -> String {
        format!(
            "GetResult(len={}, revision={}, count={}, more={})",
            self.kvs.len(),
            self.revision,
            self.count,
            self.more
        )
    }
}

/// The answer to a put.
///
/// >>> c.put("k", "v", prev_kv=True).prev_kv
#[pyclass(frozen, module = "kvclient", name = "PutResult")]
#[derive(Clone, Debug)]
pub(crate) struct PyPutResult {
    /// The store revision after the put.
    #[pyo3(get)]
    pub(crate) revision: i64,
    /// The previous key-value, when asked for with `prev_kv=True`.
    #[pyo3(get)]
    pub(crate) prev_kv: Option<PyKeyValue>,
}

impl From<PutResponse> for PyPutResult {
    fn from(r: PutResponse) -> Self {
        PyPutResult {
            revision: r.revision(),
            prev_kv: r.prev_kv().cloned().map(PyKeyValue::from),
        }
    }
}

#[pymethods]
impl PyPutResult {
    fn __repr__(&self) -> String {
        format!("PutResult(revision={})", self.revision)
    }
}

/// The answer to a delete.
///
/// >>> c.delete_prefix("tmp/").deleted
#[pyclass(frozen, module = "kvclient", name = "DeleteResult")]
#[derive(Clone, Debug)]
pub(crate) struct PyDeleteResult {
    /// The store revision after the delete.
    #[pyo3(get)]
    pub(crate) revision: i64,
    /// How many keys were deleted.
    #[pyo3(get)]
    pub(crate) deleted: i64,
    /// The deleted key-values, when asked for with `prev_kv=True`.
    #[pyo3(get)]
    pub(crate) prev_kvs: Vec<PyKeyValue>,
}

impl From<DeleteResponse> for PyDeleteResult {
    fn from(r: DeleteResponse) -> Self {
        PyDeleteResult {
            revision: r.revision(),
            deleted: r.deleted(),
            prev_kvs: kvs(r.prev_kvs()),
        }
    }
}

#[pymethods]
impl PyDeleteResult {
    fn __bool__(&self) -> bool {
        self.deleted > 0
    }
    fn __repr__(&self) -> String {
        format!(
            "DeleteResult(deleted={}, revision={})",
            self.deleted, self.revision
        )
    }
}

/// One change seen by a watch: `type` is `"put"` or `"delete"`.
///
/// >>> for event in c.watch_prefix("config/"):
/// ...     print(event.type, event.key, event.value)
#[pyclass(frozen, module = "kvclient", name = "Event")]
#[derive(Clone, Debug)]
pub(crate) struct PyEvent {
    /// `"put"` or `"delete"`.
    #[pyo3(get, name = "type")]
    pub(crate) kind: &'static str,
    /// The key-value after the change (for a delete: the key, empty value,
    /// and the delete's revision as `mod_revision`).
    #[pyo3(get)]
    pub(crate) kv: PyKeyValue,
    /// The key-value before the change, when the watch asked for `prev_kv`.
    #[pyo3(get)]
    pub(crate) prev_kv: Option<PyKeyValue>,
}

impl From<kv_client::Event> for PyEvent {
    fn from(e: kv_client::Event) -> Self {
        let kind = match e.r#type() {
            kv_client::EventType::Put => "put",
            kv_client::EventType::Delete => "delete",
        };
        PyEvent {
            kind,
            kv: e
                .kv
                .map(PyKeyValue::from)
                .unwrap_or_else(|| PyKeyValue::from(kv_client::KeyValue::default())),
            prev_kv: e.prev_kv.map(PyKeyValue::from),
        }
    }
}

#[pymethods]
impl PyEvent {
    /// The key changed.
    ///
    /// >>> kv.key
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.kv.key)
    }
    /// The new value (empty for a delete).
    ///
    /// >>> kv.value
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.kv.value)
    }
    /// The revision of the change.
    ///
    /// >>> event.revision
    #[getter]
    fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
    fn __repr__(&self) -> String {
        format!(
            "Event(type={:?}, key={:?}, revision={})",
            self.kind,
            String::from_utf8_lossy(&self.kv.key),
            self.kv.mod_revision
        )
    }
}

/// One member's status (`Client.status()`).
///
/// >>> s = c.status()
/// >>> s.version, s.leader, s.revision
#[pyclass(frozen, module = "kvclient", name = "Status")]
#[derive(Clone, Debug)]
pub(crate) struct PyStatus {
    /// The server version, e.g. `"3.4.30"`.
    #[pyo3(get)]
    pub(crate) version: String,
    /// The ID of the member that answered.
    #[pyo3(get)]
    pub(crate) member_id: u64,
    /// The ID of the leader the member knows (0 for none).
    #[pyo3(get)]
    pub(crate) leader: u64,
    /// The backend size in bytes.
    #[pyo3(get)]
    pub(crate) db_size: i64,
    /// The raft index.
    #[pyo3(get)]
    pub(crate) raft_index: u64,
    /// The raft term.
    #[pyo3(get)]
    pub(crate) raft_term: u64,
    /// The store revision.
    #[pyo3(get)]
    pub(crate) revision: i64,
}

/// One cluster member (`Client.members()`).
///
/// >>> [(m.name, m.client_urls) for m in c.members()]
#[pyclass(frozen, module = "kvclient", name = "Member")]
#[derive(Clone, Debug)]
pub(crate) struct PyMember {
    /// The member ID.
    #[pyo3(get)]
    pub(crate) id: u64,
    /// The member name.
    #[pyo3(get)]
    pub(crate) name: String,
    /// URLs for peer traffic.
    #[pyo3(get)]
    pub(crate) peer_urls: Vec<String>,
    /// URLs for clients.
    #[pyo3(get)]
    pub(crate) client_urls: Vec<String>,
    /// Whether the member is a non-voting learner.
    #[pyo3(get)]
    pub(crate) is_learner: bool,
}

#[pymethods]
impl PyMember {
    fn __repr__(&self) -> String {
        format!(
            "Member(id={:#x}, name={:?}, client_urls={:?})",
            self.id, self.name, self.client_urls
        )
    }
}
