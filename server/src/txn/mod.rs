//! Execution of Range, Put, DeleteRange and Txn over MVCC views, shared by the
//! applier (inside a write batch) and by serializable reads (over a snapshot).
//! Nothing here opens or commits a transaction.

mod range;
mod validate;
mod write;

pub use range::range;
pub use validate::{check_delete, check_put, check_range, check_txn_shape, Limits};
pub use write::{delete_range, is_read_only, is_serializable, put, read_txn, txn, LeaseBook};

#[cfg(test)]
mod compare_tests;
