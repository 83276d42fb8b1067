//! `kvclient._native`: the pyo3 layer over `kv-client` and `kv-discovery`.
//! Only registers; each concern lives in its own module with `Py`-prefixed
//! wrappers. The Python package (`python/kvclient`) re-exports it.

mod aio;
mod checks;
mod client;
mod config;
mod election;
mod errors;
mod lease;
mod lock;
mod registration;
mod registry;
mod runtime;
mod txn;
mod types;
mod watch;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_function(wrap_pyfunction!(runtime::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(aio::_shutdown, m)?)?;
    m.add_class::<client::PyClient>()?;
    m.add_class::<client::PyAsyncClient>()?;
    m.add_class::<types::PyKeyValue>()?;
    m.add_class::<types::PyGetResult>()?;
    m.add_class::<types::PyPutResult>()?;
    m.add_class::<types::PyDeleteResult>()?;
    m.add_class::<types::PyEvent>()?;
    m.add_class::<types::PyStatus>()?;
    m.add_class::<types::PyMember>()?;
    m.add_class::<txn::PyCompare>()?;
    m.add_class::<txn::PyCompareTarget>()?;
    m.add_class::<txn::PyOp>()?;
    m.add_class::<txn::PyTxnResult>()?;
    m.add_class::<watch::PyWatch>()?;
    m.add_class::<watch::PyAsyncWatch>()?;
    m.add_class::<lease::PyLease>()?;
    m.add_class::<lease::PyAsyncLease>()?;
    m.add_class::<lease::PyLeaseKeeper>()?;
    m.add_class::<lease::PyAsyncLeaseKeeper>()?;
    m.add_class::<lease::PyLeaseInfo>()?;
    m.add_class::<lock::PyLock>()?;
    m.add_class::<lock::PyAsyncLock>()?;
    m.add_class::<registry::PyServiceInstance>()?;
    m.add_class::<checks::PyCheck>()?;
    m.add_class::<checks::PyHttpCheck>()?;
    m.add_class::<checks::PyTcpCheck>()?;
    m.add_class::<checks::PyGrpcCheck>()?;
    m.add_class::<checks::PyCommandCheck>()?;
    m.add_class::<checks::PyTtlCheck>()?;
    m.add_class::<checks::PyCheckState>()?;
    m.add_class::<registry::PyServiceEvent>()?;
    m.add_class::<registration::PyRegistration>()?;
    m.add_class::<registration::PyAsyncRegistration>()?;
    m.add_class::<registration::PyRegistrationEvent>()?;
    m.add_class::<registry::PySubscription>()?;
    m.add_class::<registry::PyAsyncSubscription>()?;
    m.add_class::<election::PyElection>()?;
    m.add_class::<election::PyAsyncElection>()?;
    m.add_class::<election::PyLeadership>()?;
    m.add_class::<election::PyAsyncLeadership>()?;
    m.add_class::<election::PyObserver>()?;
    m.add_class::<election::PyAsyncObserver>()?;
    Ok(())
}
