//! The one mapping from kvd errors to etcd's wire statuses: the table in
//! [`crate::error`], read here for clients (and by `node::peer` for errors
//! crossing members).

use tonic::Status;

use crate::error::KvError;
#[cfg(test)]
use crate::mvcc::MvccError;

/// etcd's status for `e`; errors etcd has no entry for keep their own text.
pub fn to_status(e: KvError) -> Status {
    let entry = e.entry();
    // An unexpected failure (storage, internal) is logged where it surfaces.
    if entry.etcd.is_none()
        && entry.grpc == tonic::Code::Unknown
        && !matches!(e, KvError::LeaderTransferTimeout)
    {
        tracing::error!(error = %e, "request failed");
    }
    e.client_status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_etcd_texts() {
        let s = to_status(KvError::Mvcc(MvccError::Compacted));
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = to_status(KvError::EmptyKey);
        assert_eq!(s.message(), "etcdserver: key is not provided");
    }
}
