//! etcd's gRPC error table.
//!
//! etcd reports failures as a gRPC status whose code *and* exact message
//! clients match on (Go's `clientv3` maps the message back to a typed error).
//! This table reproduces etcd 3.5's `api/v3rpc/rpctypes` server-side errors
//! byte for byte, so kvd can emit them and tools can recognise them from
//! either server.
//!
//! Version notes: codes are the etcd 3.5 ones. etcd 3.6 changed three codes
//! (`NOT_CAPABLE`, `NOT_SUPPORTED_FOR_LEARNER`, `CLUSTER_VERSION_UNAVAILABLE`
//! became `FailedPrecondition`) and added `INVALID_CLIENT_API_VERSION`,
//! `INVALID_SORT_OPTION` and `PERMISSION_NOT_GIVEN`; the additions are listed
//! here too since their messages cannot clash with anything else.

use tonic::Code;

/// One etcd wire error: gRPC code, exact message, and our stable code for bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    /// gRPC status code etcd uses.
    pub code: Code,
    /// Exact status message etcd uses (clients match on it).
    pub message: &'static str,
    /// kv's stable, lower-snake identifier (e.g. `"compacted"`), for bindings.
    pub stable: &'static str,
}

impl WireError {
    /// The gRPC status to return for this error.
    pub fn status(&self) -> tonic::Status {
        tonic::Status::new(self.code, self.message)
    }

    /// Whether `status` is this error (same code and exact message).
    pub fn matches(&self, status: &tonic::Status) -> bool {
        status.code() == self.code && status.message() == self.message
    }
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        e.status()
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for WireError {}

macro_rules! wire_errors {
    ($( $(#[$meta:meta])* $name:ident = ($code:ident, $msg:literal, $stable:literal); )*) => {
        $(
            $(#[$meta])*
            pub const $name: WireError = WireError {
                code: Code::$code,
                message: $msg,
                stable: $stable,
            };
        )*

        /// Every entry of the table, in etcd's order.
        pub const ALL: &[WireError] = &[$($name),*];
    };
}

wire_errors! {
    // --- request validation and MVCC
    /// `ErrGRPCEmptyKey`
    EMPTY_KEY = (InvalidArgument, "etcdserver: key is not provided", "empty_key");
    /// `ErrGRPCKeyNotFound`
    KEY_NOT_FOUND = (InvalidArgument, "etcdserver: key not found", "key_not_found");
    /// `ErrGRPCValueProvided`
    VALUE_PROVIDED = (InvalidArgument, "etcdserver: value is provided", "value_provided");
    /// `ErrGRPCLeaseProvided`
    LEASE_PROVIDED = (InvalidArgument, "etcdserver: lease is provided", "lease_provided");
    /// `ErrGRPCTooManyOps`
    TOO_MANY_OPS = (InvalidArgument, "etcdserver: too many operations in txn request", "too_many_ops");
    /// `ErrGRPCDuplicateKey`
    DUPLICATE_KEY = (InvalidArgument, "etcdserver: duplicate key given in txn request", "duplicate_key");
    /// `ErrGRPCInvalidClientAPIVersion` (etcd 3.6+)
    INVALID_CLIENT_API_VERSION = (InvalidArgument, "etcdserver: invalid client api version", "invalid_client_api_version");
    /// `ErrGRPCInvalidSortOption` (etcd 3.6+)
    INVALID_SORT_OPTION = (InvalidArgument, "etcdserver: invalid sort option", "invalid_sort_option");
    /// `ErrGRPCCompacted`
    COMPACTED = (OutOfRange, "etcdserver: mvcc: required revision has been compacted", "compacted");
    /// `ErrGRPCFutureRev`
    FUTURE_REV = (OutOfRange, "etcdserver: mvcc: required revision is a future revision", "future_rev");
    /// `ErrGRPCNoSpace`
    NO_SPACE = (ResourceExhausted, "etcdserver: mvcc: database space exceeded", "no_space");

    // --- leases
    /// `ErrGRPCLeaseNotFound`
    LEASE_NOT_FOUND = (NotFound, "etcdserver: requested lease not found", "lease_not_found");
    /// `ErrGRPCLeaseExist`
    LEASE_EXIST = (FailedPrecondition, "etcdserver: lease already exists", "lease_exist");
    /// `ErrGRPCLeaseTTLTooLarge`
    LEASE_TTL_TOO_LARGE = (OutOfRange, "etcdserver: too large lease TTL", "lease_ttl_too_large");

    // --- watch
    /// `ErrGRPCWatchCanceled`
    WATCH_CANCELED = (Cancelled, "etcdserver: watch canceled", "watch_canceled");

    // --- membership
    /// `ErrGRPCMemberExist`
    MEMBER_EXIST = (FailedPrecondition, "etcdserver: member ID already exist", "member_exist");
    /// `ErrGRPCPeerURLExist`
    PEER_URL_EXIST = (FailedPrecondition, "etcdserver: Peer URLs already exists", "peer_url_exist");
    /// `ErrGRPCMemberNotEnoughStarted`
    MEMBER_NOT_ENOUGH_STARTED = (FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members", "member_not_enough_started");
    /// `ErrGRPCMemberBadURLs`
    MEMBER_BAD_URLS = (InvalidArgument, "etcdserver: given member URLs are invalid", "member_bad_urls");
    /// `ErrGRPCMemberNotFound`
    MEMBER_NOT_FOUND = (NotFound, "etcdserver: member not found", "member_not_found");
    /// `ErrGRPCMemberNotLearner`
    MEMBER_NOT_LEARNER = (FailedPrecondition, "etcdserver: can only promote a learner member", "member_not_learner");
    /// `ErrGRPCLearnerNotReady`
    LEARNER_NOT_READY = (FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader", "learner_not_ready");
    /// `ErrGRPCTooManyLearners`
    TOO_MANY_LEARNERS = (FailedPrecondition, "etcdserver: too many learner members in cluster", "too_many_learners");
    /// `ErrGRPCClusterIdMismatch`
    CLUSTER_ID_MISMATCH = (FailedPrecondition, "etcdserver: cluster ID mismatch", "cluster_id_mismatch");

    // --- request size / rate
    /// `ErrGRPCRequestTooLarge`
    REQUEST_TOO_LARGE = (InvalidArgument, "etcdserver: request is too large", "request_too_large");
    /// `ErrGRPCRequestTooManyRequests`
    TOO_MANY_REQUESTS = (ResourceExhausted, "etcdserver: too many requests", "too_many_requests");

    // --- auth
    /// `ErrGRPCRootUserNotExist`
    ROOT_USER_NOT_EXIST = (FailedPrecondition, "etcdserver: root user does not exist", "root_user_not_exist");
    /// `ErrGRPCRootRoleNotExist`
    ROOT_ROLE_NOT_EXIST = (FailedPrecondition, "etcdserver: root user does not have root role", "root_role_not_exist");
    /// `ErrGRPCUserAlreadyExist`
    USER_ALREADY_EXIST = (FailedPrecondition, "etcdserver: user name already exists", "user_already_exist");
    /// `ErrGRPCUserEmpty`
    USER_EMPTY = (InvalidArgument, "etcdserver: user name is empty", "user_empty");
    /// `ErrGRPCUserNotFound`
    USER_NOT_FOUND = (FailedPrecondition, "etcdserver: user name not found", "user_not_found");
    /// `ErrGRPCRoleAlreadyExist`
    ROLE_ALREADY_EXIST = (FailedPrecondition, "etcdserver: role name already exists", "role_already_exist");
    /// `ErrGRPCRoleNotFound`
    ROLE_NOT_FOUND = (FailedPrecondition, "etcdserver: role name not found", "role_not_found");
    /// `ErrGRPCRoleEmpty`
    ROLE_EMPTY = (InvalidArgument, "etcdserver: role name is empty", "role_empty");
    /// `ErrGRPCAuthFailed`
    AUTH_FAILED = (InvalidArgument, "etcdserver: authentication failed, invalid user ID or password", "auth_failed");
    /// `ErrGRPCPermissionNotGiven` (etcd 3.6+)
    PERMISSION_NOT_GIVEN = (InvalidArgument, "etcdserver: permission not given", "permission_not_given");
    /// `ErrGRPCPermissionDenied`
    PERMISSION_DENIED = (PermissionDenied, "etcdserver: permission denied", "permission_denied");
    /// `ErrGRPCRoleNotGranted`
    ROLE_NOT_GRANTED = (FailedPrecondition, "etcdserver: role is not granted to the user", "role_not_granted");
    /// `ErrGRPCPermissionNotGranted`
    PERMISSION_NOT_GRANTED = (FailedPrecondition, "etcdserver: permission is not granted to the role", "permission_not_granted");
    /// `ErrGRPCAuthNotEnabled`
    AUTH_NOT_ENABLED = (FailedPrecondition, "etcdserver: authentication is not enabled", "auth_not_enabled");
    /// `ErrGRPCInvalidAuthToken`
    INVALID_AUTH_TOKEN = (Unauthenticated, "etcdserver: invalid auth token", "invalid_auth_token");
    /// `ErrGRPCInvalidAuthMgmt`
    INVALID_AUTH_MGMT = (InvalidArgument, "etcdserver: invalid auth management", "invalid_auth_mgmt");
    /// `ErrGRPCAuthOldRevision`
    AUTH_OLD_REVISION = (InvalidArgument, "etcdserver: revision of auth store is old", "auth_old_revision");

    // --- server / raft state
    /// `ErrGRPCNoLeader`
    NO_LEADER = (Unavailable, "etcdserver: no leader", "no_leader");
    /// `ErrGRPCNotLeader`
    NOT_LEADER = (FailedPrecondition, "etcdserver: not leader", "not_leader");
    /// `ErrGRPCLeaderChanged`
    LEADER_CHANGED = (Unavailable, "etcdserver: leader changed", "leader_changed");
    /// `ErrGRPCNotCapable` (etcd 3.6 uses `FailedPrecondition`)
    NOT_CAPABLE = (Unavailable, "etcdserver: not capable", "not_capable");
    /// `ErrGRPCStopped`
    STOPPED = (Unavailable, "etcdserver: server stopped", "stopped");
    /// `ErrGRPCTimeout`
    TIMEOUT = (Unavailable, "etcdserver: request timed out", "timeout");
    /// `ErrGRPCTimeoutDueToLeaderFail`
    TIMEOUT_DUE_TO_LEADER_FAIL = (Unavailable, "etcdserver: request timed out, possibly due to previous leader failure", "timeout_due_to_leader_fail");
    /// `ErrGRPCTimeoutDueToConnectionLost`
    TIMEOUT_DUE_TO_CONNECTION_LOST = (Unavailable, "etcdserver: request timed out, possibly due to connection lost", "timeout_due_to_connection_lost");
    /// `ErrGRPCTimeoutWaitAppliedIndex`
    TIMEOUT_WAIT_APPLIED_INDEX = (Unavailable, "etcdserver: request timed out, waiting for the applied index took too long", "timeout_wait_applied_index");
    /// `ErrGRPCUnhealthy`
    UNHEALTHY = (Unavailable, "etcdserver: unhealthy cluster", "unhealthy");
    /// `ErrGRPCCorrupt`
    CORRUPT = (DataLoss, "etcdserver: corrupt cluster", "corrupt");
    /// `ErrGPRCNotSupportedForLearner` (sic; etcd 3.6 uses `FailedPrecondition`)
    NOT_SUPPORTED_FOR_LEARNER = (Unavailable, "etcdserver: rpc not supported for learner", "not_supported_for_learner");
    /// `ErrGRPCBadLeaderTransferee`
    BAD_LEADER_TRANSFEREE = (FailedPrecondition, "etcdserver: bad leader transferee", "bad_leader_transferee");

    // --- downgrade
    /// `ErrGRPCClusterVersionUnavailable` (etcd 3.6 uses `FailedPrecondition`)
    CLUSTER_VERSION_UNAVAILABLE = (Unavailable, "etcdserver: cluster version not found during downgrade", "cluster_version_unavailable");
    /// `ErrGRPCWrongDowngradeVersionFormat`
    WRONG_DOWNGRADE_VERSION_FORMAT = (InvalidArgument, "etcdserver: wrong downgrade target version format", "wrong_downgrade_version_format");
    /// `ErrGRPCInvalidDowngradeTargetVersion`
    INVALID_DOWNGRADE_TARGET_VERSION = (InvalidArgument, "etcdserver: invalid downgrade target version", "invalid_downgrade_target_version");
    /// `ErrGRPCDowngradeInProcess`
    DOWNGRADE_IN_PROCESS = (FailedPrecondition, "etcdserver: cluster has a downgrade job in progress", "downgrade_in_process");
    /// `ErrGRPCNoInflightDowngrade`
    NO_INFLIGHT_DOWNGRADE = (FailedPrecondition, "etcdserver: no inflight downgrade job", "no_inflight_downgrade");

    // --- context
    /// `ErrGRPCCanceled`
    CANCELED = (Cancelled, "etcdserver: request canceled", "canceled");
    /// `ErrGRPCDeadlineExceeded`
    DEADLINE_EXCEEDED = (DeadlineExceeded, "etcdserver: context deadline exceeded", "deadline_exceeded");
}

/// Recognise a status returned by etcd or kvd (match on code + exact message).
pub fn from_status(status: &tonic::Status) -> Option<&'static WireError> {
    ALL.iter().find(|e| e.matches(status))
}

/// Look an entry up by its stable identifier (e.g. `"compacted"`).
pub fn from_stable(stable: &str) -> Option<&'static WireError> {
    ALL.iter().find(|e| e.stable == stable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn messages_and_stable_codes_are_unique() {
        let mut messages = HashSet::new();
        let mut stables = HashSet::new();
        for e in ALL {
            assert!(
                messages.insert(e.message),
                "duplicate message {:?}",
                e.message
            );
            assert!(stables.insert(e.stable), "duplicate stable {:?}", e.stable);
            assert!(e.message.starts_with("etcdserver: "), "{:?}", e.message);
            assert!(
                e.stable
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{:?}",
                e.stable
            );
        }
        assert_eq!(ALL.len(), 63);
    }

    #[test]
    fn from_status_round_trips() {
        for e in ALL {
            let st = e.status();
            assert_eq!(st.code(), e.code);
            assert_eq!(st.message(), e.message);
            assert_eq!(from_status(&st), Some(e));
            assert_eq!(from_stable(e.stable), Some(e));
            let via_from: tonic::Status = (*e).into();
            assert_eq!(from_status(&via_from), Some(e));
        }
    }

    #[test]
    fn from_status_requires_code_and_exact_message() {
        let wrong_code = tonic::Status::new(Code::Internal, COMPACTED.message);
        assert_eq!(from_status(&wrong_code), None);
        let wrong_msg = tonic::Status::new(Code::OutOfRange, "etcdserver: mvcc: required revision");
        assert_eq!(from_status(&wrong_msg), None);
        assert_eq!(from_status(&tonic::Status::ok("")), None);
    }

    #[test]
    fn spot_checks_against_etcd() {
        let check = |e: WireError, code: Code, msg: &str| {
            assert_eq!(e.code, code, "{}", e.stable);
            assert_eq!(e.message, msg, "{}", e.stable);
        };
        check(
            EMPTY_KEY,
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        );
        check(
            COMPACTED,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        check(
            FUTURE_REV,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        check(
            LEASE_NOT_FOUND,
            Code::NotFound,
            "etcdserver: requested lease not found",
        );
        check(
            TOO_MANY_OPS,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        );
        check(
            DUPLICATE_KEY,
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        );
        check(
            REQUEST_TOO_LARGE,
            Code::InvalidArgument,
            "etcdserver: request is too large",
        );
        check(
            NO_SPACE,
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        );
        check(
            LEASE_TTL_TOO_LARGE,
            Code::OutOfRange,
            "etcdserver: too large lease TTL",
        );
        check(NO_LEADER, Code::Unavailable, "etcdserver: no leader");
        check(
            NOT_LEADER,
            Code::FailedPrecondition,
            "etcdserver: not leader",
        );
        check(
            INVALID_AUTH_TOKEN,
            Code::Unauthenticated,
            "etcdserver: invalid auth token",
        );
        check(
            PERMISSION_DENIED,
            Code::PermissionDenied,
            "etcdserver: permission denied",
        );
        check(CORRUPT, Code::DataLoss, "etcdserver: corrupt cluster");
        check(
            PEER_URL_EXIST,
            Code::FailedPrecondition,
            "etcdserver: Peer URLs already exists",
        );
    }
}
