"""kvclient: a typed client for kv and any etcd v3 server.

Blocking ``Client`` and asyncio ``AsyncClient`` share method names (which
follow python-etcd3 where the concept is the same). The protocol, retries,
watch resume and the lock/election/registry recipes are the Rust crates
``kv-client`` and ``kv-discovery``; this package is a thin layer over them.

>>> import kvclient
>>> with kvclient.Client(["127.0.0.1:2379"]) as c:  # doctest: +SKIP
...     c.put("config/db", "postgres://...")
...     print(c.get("config/db").text)
"""

from kvclient._native import (
    AsyncClient,
    AsyncElection,
    AsyncLease,
    AsyncLeaseKeeper,
    AsyncLeadership,
    AsyncLock,
    AsyncObserver,
    AsyncRegistration,
    AsyncSubscription,
    AsyncWatch,
    AuthFailedError,
    Check,
    CheckState,
    Client,
    ClosedError,
    CommandCheck,
    CompactedError,
    Compare,
    CompareTarget,
    ConnectionFailedError,
    DeadlineExceededError,
    DeleteResult,
    Election,
    Event,
    FutureRevisionError,
    GetResult,
    GrpcCheck,
    HttpCheck,
    InvalidArgumentError,
    KeyNotFoundError,
    KeyValue,
    KvError,
    Lease,
    LeaseInfo,
    LeaseKeeper,
    LeaseNotFoundError,
    Leadership,
    Lock,
    LockedError,
    Member,
    NoLeaderError,
    NoSpaceError,
    NotLeaderError,
    Observer,
    Op,
    PermissionDeniedError,
    PutResult,
    Registration,
    RegistrationEvent,
    ServiceEvent,
    ServiceInstance,
    SessionExpiredError,
    Status,
    Subscription,
    TcpCheck,
    TtlCheck,
    TxnResult,
    Watch,
    WatchCanceledError,
)

__all__ = [
    "AsyncClient",
    "AsyncElection",
    "AsyncLease",
    "AsyncLeaseKeeper",
    "AsyncLeadership",
    "AsyncLock",
    "AsyncObserver",
    "AsyncRegistration",
    "AsyncSubscription",
    "AsyncWatch",
    "AuthFailedError",
    "Check",
    "CheckState",
    "Client",
    "ClosedError",
    "CommandCheck",
    "CompactedError",
    "Compare",
    "CompareTarget",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "DeleteResult",
    "Election",
    "Event",
    "FutureRevisionError",
    "GetResult",
    "GrpcCheck",
    "HttpCheck",
    "InvalidArgumentError",
    "KeyNotFoundError",
    "KeyValue",
    "KvError",
    "Lease",
    "LeaseInfo",
    "LeaseKeeper",
    "LeaseNotFoundError",
    "Leadership",
    "Lock",
    "LockedError",
    "Member",
    "NoLeaderError",
    "NoSpaceError",
    "NotLeaderError",
    "Observer",
    "Op",
    "PermissionDeniedError",
    "PutResult",
    "Registration",
    "RegistrationEvent",
    "ServiceEvent",
    "ServiceInstance",
    "SessionExpiredError",
    "Status",
    "Subscription",
    "TcpCheck",
    "TtlCheck",
    "TxnResult",
    "Watch",
    "WatchCanceledError",
]

import atexit as _atexit
import os as _os

from kvclient import _native

if hasattr(_os, "register_at_fork"):
    # The child has none of the parent's runtime threads: it gets a new
    # runtime on first use. Objects made before the fork must not be used
    # in the child (see the README's "Processes and fork").
    _os.register_at_fork(after_in_child=_native._after_fork_in_child)

# Before finalization: stop runtime threads from entering Python and wait
# for those that are (CPython ends a thread that attaches during
# finalization abruptly, which would crash the process).
_atexit.register(_native._shutdown)
