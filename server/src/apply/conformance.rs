//! openraft's storage conformance suite, run on our log store and state machine.

use std::sync::Arc;
use std::time::Duration;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};

use super::{Core, StateMachine};
use crate::header::HeaderSource;
use crate::mvcc::Store;
use crate::raft::log_store::LogStore;
use crate::raft::{NodeId, TypeConfig};

struct Builder;

fn err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(err)?;
        let (store, rec) = Store::open(&dir.path().join("db")).map_err(err)?;
        let core = Core::new(
            Arc::new(store),
            Arc::new(HeaderSource::new(1, 1)),
            Duration::from_secs(1),
        );
        let sm = StateMachine::new(core, &rec, dir.path().join("snap"));
        let log = LogStore::open(&dir.path().join("wal")).map_err(err)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
