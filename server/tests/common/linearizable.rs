//! The linearizability checker lives in the kv-robustness crate (the fault
//! campaign uses it too); this module re-exports it so there is one copy.
// Most test binaries include `common` without using the checker.
#[allow(unused_imports)]
pub use kv_robustness::linearizable::*;
