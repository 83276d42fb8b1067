//! The transaction builder: `Compare.value("k") == "v"` makes a compare,
//! `Op.put/get/delete/txn` make operations, and `Client.transaction`
//! sends them (python-etcd3's shape).

use kv_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use pyo3::basic::CompareOp as PyCmp;
use pyo3::prelude::*;

use crate::errors::invalid;
use crate::types::{Bin, PyDeleteResult, PyGetResult, PyPutResult};

#[derive(Clone, Copy, Debug)]
enum Target {
    Value,
    Version,
    CreateRevision,
    ModRevision,
    Lease,
}

/// The left side of a compare: a key's value, version, create or mod
/// revision, or lease. Compare it with `==`, `!=`, `<` or `>` to get a
/// `Compare`.
///
/// >>> Compare.mod_revision("k") > 5
#[pyclass(frozen, module = "kvclient", name = "CompareTarget")]
#[derive(Clone, Debug)]
pub(crate) struct PyCompareTarget {
    target: Target,
    key: Vec<u8>,
    range_end: Option<Vec<u8>>,
}

/// One condition of a transaction, e.g. `Compare.version("k") == 0`.
///
/// >>> c.transaction([Compare.value("k") == "old"], [Op.put("k", "new")])
#[pyclass(frozen, module = "kvclient", name = "Compare")]
#[derive(Clone, Debug)]
pub(crate) struct PyCompare {
    pub(crate) inner: Compare,
}

fn target(target: Target, key: Bin, prefix: bool, range_end: Option<Bin>) -> PyCompareTarget {
    let range_end = match (prefix, range_end) {
        (_, Some(end)) => Some(end.0),
        (true, None) => Some(kv_client::kv::prefix_end(&key.0)),
        (false, None) => None,
    };
    PyCompareTarget {
        target,
        key: key.0,
        range_end,
    }
}

#[pymethods]
impl PyCompare {
    /// Compares the value of `key` (or of every key in the range/prefix).
    ///
    /// >>> Compare.value("k") == "v"
    #[staticmethod]
    #[pyo3(signature = (key, *, prefix=false, range_end=None))]
    fn value(key: Bin, prefix: bool, range_end: Option<Bin>) -> PyCompareTarget {
        target(Target::Value, key, prefix, range_end)
    }
    /// Compares the version of `key` (0 when it does not exist).
    ///
    /// >>> Compare.version("k") == 0
    #[staticmethod]
    #[pyo3(signature = (key, *, prefix=false, range_end=None))]
    fn version(key: Bin, prefix: bool, range_end: Option<Bin>) -> PyCompareTarget {
        target(Target::Version, key, prefix, range_end)
    }
    /// Compares the create revision of `key` (0 when it does not exist).
    ///
    /// >>> Compare.create_revision("k") < 100
    #[staticmethod]
    #[pyo3(signature = (key, *, prefix=false, range_end=None))]
    fn create_revision(key: Bin, prefix: bool, range_end: Option<Bin>) -> PyCompareTarget {
        target(Target::CreateRevision, key, prefix, range_end)
    }
    /// Compares the mod revision of `key`.
    ///
    /// >>> Compare.mod_revision("k") == kv.mod_revision
    #[staticmethod]
    #[pyo3(signature = (key, *, prefix=false, range_end=None))]
    fn mod_revision(key: Bin, prefix: bool, range_end: Option<Bin>) -> PyCompareTarget {
        target(Target::ModRevision, key, prefix, range_end)
    }
    /// Compares the lease ID attached to `key` (0 for none).
    ///
    /// >>> Compare.lease("k") == lease.id
    #[staticmethod]
    #[pyo3(signature = (key, *, prefix=false, range_end=None))]
    fn lease(key: Bin, prefix: bool, range_end: Option<Bin>) -> PyCompareTarget {
        target(Target::Lease, key, prefix, range_end)
    }
    fn __repr__(&self) -> String {
        format!("Compare({:?})", self.inner)
    }
}

#[pymethods]
impl PyCompareTarget {
    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: PyCmp) -> PyResult<PyCompare> {
        let op = match op {
            PyCmp::Eq => CompareOp::Equal,
            PyCmp::Ne => CompareOp::NotEqual,
            PyCmp::Lt => CompareOp::Less,
            PyCmp::Gt => CompareOp::Greater,
            PyCmp::Le | PyCmp::Ge => {
                return Err(invalid("etcd compares support only ==, !=, < and >"));
            }
        };
        let key = self.key.clone();
        let mut c = match self.target {
            Target::Value => Compare::value(key, op, other.extract::<Bin>()?.0),
            Target::Version => Compare::version(key, op, other.extract()?),
            Target::CreateRevision => Compare::create_revision(key, op, other.extract()?),
            Target::ModRevision => Compare::mod_revision(key, op, other.extract()?),
            Target::Lease => Compare::lease(key, op, other.extract()?),
        };
        if let Some(end) = &self.range_end {
            c = c.with_range(end.clone());
        }
        Ok(PyCompare { inner: c })
    }
    fn __repr__(&self) -> String {
        format!(
            "CompareTarget({:?}, {:?})",
            self.target,
            String::from_utf8_lossy(&self.key)
        )
    }
}

/// One operation of a transaction: `Op.get`, `Op.put`, `Op.delete` or a
/// nested `Op.txn`.
///
/// >>> c.transaction([], [Op.put("a", "1"), Op.get("b"), Op.delete("c")])
#[pyclass(frozen, module = "kvclient", name = "Op")]
#[derive(Clone, Debug)]
pub(crate) struct PyOp {
    pub(crate) inner: TxnOp,
}

/// Read options shared by `get_range`, `get_prefix` and `Op.get`.
pub(crate) fn get_options(
    prefix: bool,
    range_end: Option<Bin>,
    limit: Option<i64>,
    revision: Option<i64>,
    keys_only: bool,
    count_only: bool,
    serializable: bool,
) -> GetOptions {
    let mut o = GetOptions::new();
    if let Some(end) = range_end {
        o = o.with_range(end.0);
    } else if prefix {
        o = o.with_prefix();
    }
    if let Some(l) = limit {
        o = o.with_limit(l);
    }
    if let Some(r) = revision {
        o = o.with_revision(r);
    }
    if keys_only {
        o = o.with_keys_only();
    }
    if count_only {
        o = o.with_count_only();
    }
    if serializable {
        o = o.with_serializable();
    }
    o
}

/// Put options shared by `put` and `Op.put`.
pub(crate) fn put_options(lease: Option<i64>, prev_kv: bool) -> PutOptions {
    let mut o = PutOptions::new();
    if let Some(l) = lease {
        o = o.with_lease(l);
    }
    if prev_kv {
        o = o.with_prev_kv();
    }
    o
}

/// Delete options shared by `delete*` and `Op.delete`.
pub(crate) fn delete_options(prefix: bool, range_end: Option<Bin>, prev_kv: bool) -> DeleteOptions {
    let mut o = DeleteOptions::new();
    if let Some(end) = range_end {
        o = o.with_range(end.0);
    } else if prefix {
        o = o.with_prefix();
    }
    if prev_kv {
        o = o.with_prev_kv();
    }
    o
}

/// Builds a transaction from Python lists.
pub(crate) fn build_txn(
    compare: Vec<PyRef<'_, PyCompare>>,
    success: Vec<PyRef<'_, PyOp>>,
    failure: Vec<PyRef<'_, PyOp>>,
) -> Txn {
    Txn::new()
        .when(compare.iter().map(|c| c.inner.clone()))
        .and_then(success.iter().map(|o| o.inner.clone()))
        .or_else(failure.iter().map(|o| o.inner.clone()))
}

#[pymethods]
impl PyOp {
    /// Reads `key` (or a prefix/range) inside the transaction.
    ///
    /// >>> Op.get("config/", prefix=True)
    #[staticmethod]
    #[pyo3(signature = (key, *, prefix=false, range_end=None, limit=None, revision=None, keys_only=false, count_only=false))]
    #[allow(clippy::too_many_arguments)]
    fn get(
        key: Bin,
        prefix: bool,
        range_end: Option<Bin>,
        limit: Option<i64>,
        revision: Option<i64>,
        keys_only: bool,
        count_only: bool,
    ) -> PyOp {
        let o = get_options(
            prefix, range_end, limit, revision, keys_only, count_only, false,
        );
        PyOp {
            inner: TxnOp::get(key.0, o),
        }
    }
    /// Writes `key` inside the transaction.
    ///
    /// >>> Op.put("k", "v", lease=lease.id)
    #[staticmethod]
    #[pyo3(signature = (key, value, *, lease=None, prev_kv=false))]
    fn put(key: Bin, value: Bin, lease: Option<i64>, prev_kv: bool) -> PyOp {
        PyOp {
            inner: TxnOp::put(key.0, value.0, put_options(lease, prev_kv)),
        }
    }
    /// Deletes `key` (or a prefix/range) inside the transaction.
    ///
    /// >>> Op.delete("config/", prefix=True)
    #[staticmethod]
    #[pyo3(signature = (key, *, prefix=false, range_end=None, prev_kv=false))]
    fn delete(key: Bin, prefix: bool, range_end: Option<Bin>, prev_kv: bool) -> PyOp {
        PyOp {
            inner: TxnOp::delete(key.0, delete_options(prefix, range_end, prev_kv)),
        }
    }
    /// A nested transaction.
    ///
    /// >>> Op.txn([Compare.version("k") > 0], [Op.delete("k")])
    #[staticmethod]
    #[pyo3(signature = (compare, success=Vec::new(), failure=Vec::new()))]
    fn txn(
        compare: Vec<PyRef<'_, PyCompare>>,
        success: Vec<PyRef<'_, PyOp>>,
        failure: Vec<PyRef<'_, PyOp>>,
    ) -> PyOp {
        PyOp {
            inner: TxnOp::txn(build_txn(compare, success, failure)),
        }
    }
    fn __repr__(&self) -> String {
        format!("Op({:?})", self.inner)
    }
}

/// The answer to a transaction: whether the compares held, the store
/// revision, and one result per operation of the branch taken
/// (`GetResult`, `PutResult`, `DeleteResult` or a nested `TxnResult`).
///
/// >>> r = c.transaction([Compare.version("k") == 0], [Op.put("k", "v")])
/// >>> r.succeeded, r.revision
#[pyclass(frozen, module = "kvclient", name = "TxnResult")]
#[derive(Debug)]
pub(crate) struct PyTxnResult {
    /// Whether every compare held (so `success` ran).
    #[pyo3(get)]
    pub(crate) succeeded: bool,
    /// The store revision after the transaction.
    #[pyo3(get)]
    pub(crate) revision: i64,
    pub(crate) responses: Vec<OpResult>,
}

#[derive(Debug)]
pub(crate) enum OpResult {
    Get(PyGetResult),
    Put(PyPutResult),
    Delete(PyDeleteResult),
    Txn(PyTxnResult),
}

impl From<TxnResponse> for PyTxnResult {
    fn from(r: TxnResponse) -> Self {
        PyTxnResult {
            succeeded: r.succeeded(),
            revision: r.revision(),
            responses: r
                .op_responses()
                .into_iter()
                .map(|o| match o {
                    TxnOpResponse::Get(g) => OpResult::Get(g.into()),
                    TxnOpResponse::Put(p) => OpResult::Put(p.into()),
                    TxnOpResponse::Delete(d) => OpResult::Delete(d.into()),
                    TxnOpResponse::Txn(t) => OpResult::Txn(t.into()),
                })
                .collect(),
        }
    }
}

fn op_result_py<'py>(py: Python<'py>, r: &OpResult) -> PyResult<Bound<'py, PyAny>> {
    Ok(match r {
        OpResult::Get(g) => Bound::new(py, g.clone())?.into_any(),
        OpResult::Put(p) => Bound::new(py, p.clone())?.into_any(),
        OpResult::Delete(d) => Bound::new(py, d.clone())?.into_any(),
        OpResult::Txn(t) => Bound::new(py, t.clone_shallow())?.into_any(),
    })
}

impl PyTxnResult {
    fn clone_shallow(&self) -> PyTxnResult {
        PyTxnResult {
            succeeded: self.succeeded,
            revision: self.revision,
            responses: self
                .responses
                .iter()
                .map(|r| match r {
                    OpResult::Get(g) => OpResult::Get(g.clone()),
                    OpResult::Put(p) => OpResult::Put(p.clone()),
                    OpResult::Delete(d) => OpResult::Delete(d.clone()),
                    OpResult::Txn(t) => OpResult::Txn(t.clone_shallow()),
                })
                .collect(),
        }
    }
}

#[pymethods]
impl PyTxnResult {
    /// One result per operation of the branch taken.
    ///
    /// >>> r = c.transaction([], [Op.get("k")])
    /// >>> r.responses[0].kvs
    #[getter]
    fn responses<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.responses.iter().map(|r| op_result_py(py, r)).collect()
    }
    fn __bool__(&self) -> bool {
        self.succeeded
    }
    fn __repr__(&self) -> String {
        format!(
            "TxnResult(succeeded={}, revision={}, responses={})",
            self.succeeded,
            self.revision,
            self.responses.len()
        )
    }
}
