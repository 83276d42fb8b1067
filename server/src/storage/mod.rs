//! On-disk formats owned by kvd: the raft log's record files and every redb table.
pub mod etcd_format;
pub mod restore;
pub mod schema;
pub mod snapshot;
pub mod wal;
