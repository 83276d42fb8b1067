"""Type stubs for the compiled module (checked by mypy stubtest in CI)."""

from os import PathLike
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Union, final

from typing_extensions import disjoint_base

_Bin = Union[str, bytes, bytearray]
_LeaseArg = Union[int, "Lease", "AsyncLease", "LeaseKeeper", "AsyncLeaseKeeper"]
_Endpoints = Union[str, Sequence[str]]
_HealthFilter = Literal["passing", "warning", "any"]
_Path = Union[str, PathLike[str]]

__all__ = [
    "AsyncClient",
    "AsyncElection",
    "AsyncLeadership",
    "AsyncLease",
    "AsyncLeaseKeeper",
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
    "Leadership",
    "Lease",
    "LeaseInfo",
    "LeaseKeeper",
    "LeaseNotFoundError",
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
    "_after_fork_in_child",
    "_shutdown",
]

class KvError(Exception):
    """Root of every kvclient error.

    >>> try:
    ...     c.get("k")
    ... except kvclient.KvError as e:
    ...     print(e.code, e.message)
    """
    @property
    def code(self) -> str:
        """A stable, lower-snake identifier, e.g. "compacted"."""
    @property
    def message(self) -> str:
        """The error text (etcd's, for server errors)."""

class ConnectionFailedError(KvError):
    """No server could be reached, or the cluster has no leader (codes `unavailable`, `transport`, `no_leader`, `not_leader`).

    >>> try:
    ...     c.get("k")
    ... except kvclient.ConnectionFailedError:
    ...     retry_later()
    """
class DeadlineExceededError(KvError):
    """The request did not finish within its timeout; a write may or may not have been applied.

    >>> kvclient.Client(["127.0.0.1:2379"], timeout=2.0)
    """

class CompactedError(KvError):
    """The revision asked for was compacted; `compact_revision` is the oldest one left, when known.

    >>> try:
    ...     c.get("k")
    ... except kvclient.CompactedError as e:
    ...     resync(e.compact_revision)
    """
    @property
    def compact_revision(self) -> Optional[int]:
        """The oldest revision still available, when known."""

class FutureRevisionError(KvError):
    """The revision asked for is newer than the store's.

    >>> try:
    ...     c.get("k")
    ... except kvclient.FutureRevisionError:
    ...     ...
    """
class LeaseNotFoundError(KvError):
    """The lease does not exist (never granted, revoked or expired).

    >>> try:
    ...     c.get("k")
    ... except kvclient.LeaseNotFoundError:
    ...     lease = c.lease(10)
    """
class KeyNotFoundError(KvError):
    """The key does not exist.

    >>> try:
    ...     c.get("k")
    ... except kvclient.KeyNotFoundError:
    ...     ...
    """
class PermissionDeniedError(KvError):
    """The authenticated user may not do this.

    >>> try:
    ...     c.get("k")
    ... except kvclient.PermissionDeniedError as e:
    ...     print(e.message)
    """
class AuthFailedError(KvError):
    """Wrong user name or password, or an auth token the server refused.

    >>> kvclient.Client(endpoints, user="app", password="wrong")  # raises AuthFailedError
    """
class InvalidArgumentError(KvError):
    """The request or the client configuration is malformed or too large.

    >>> try:
    ...     c.get("k")
    ... except kvclient.InvalidArgumentError as e:
    ...     print(e.message)
    """
class NoSpaceError(KvError):
    """The server's storage quota is exhausted.

    >>> try:
    ...     c.get("k")
    ... except kvclient.NoSpaceError:
    ...     c.compact(c.status().revision)
    """
class WatchCanceledError(KvError):
    """The server canceled a watch for a reason other than compaction.

    >>> try:
    ...     c.get("k")
    ... except kvclient.WatchCanceledError:
    ...     w = c.watch_prefix("config/")
    """
class LockedError(KvError):
    """`try_lock`/`acquire(timeout=0)` found the lock held by another session.

    >>> try:
    ...     c.get("k")
    ... except kvclient.LockedError:
    ...     ...
    """
class SessionExpiredError(KvError):
    """The lease behind a lock, election or registration was lost.

    >>> try:
    ...     c.get("k")
    ... except kvclient.SessionExpiredError:
    ...     start_over()
    """
class NotLeaderError(KvError):
    """This candidate is no longer the election's leader.

    >>> try:
    ...     c.get("k")
    ... except kvclient.NotLeaderError:
    ...     step_down()
    """
class NoLeaderError(KvError):
    """Nobody is campaigning in the election.

    >>> try:
    ...     c.get("k")
    ... except kvclient.NoLeaderError:
    ...     ...
    """
class ClosedError(KvError):
    """The object (watch, registration, ...) was closed.

    >>> try:
    ...     c.get("k")
    ... except kvclient.ClosedError:
    ...     ...
    """

def _after_fork_in_child() -> None: ...
def _shutdown() -> None: ...
@final
class KeyValue:
    """A stored key-value. `key`/`value` are bytes; `key_text`/`text` decode
    them as UTF-8.

    >>> kv = c.get("config/db")
    >>> kv.value, kv.text, kv.mod_revision
    """
    @property
    def key(self) -> bytes:
        """The key.

        >>> kv.key
        """
    @property
    def value(self) -> bytes:
        """The value.

        >>> kv.value
        """
    @property
    def key_text(self) -> str:
        """The key decoded as UTF-8.

        >>> kv.key_text
        """
    @property
    def text(self) -> str:
        """The value decoded as UTF-8.

        >>> kv.text
        """
    @property
    def create_revision(self) -> int:
        """Revision of the key's creation."""
    @property
    def mod_revision(self) -> int:
        """Revision of the key's last change."""
    @property
    def version(self) -> int:
        """Number of changes since creation (1 after the first put)."""
    @property
    def lease(self) -> int:
        """ID of the lease attached, 0 for none."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class GetResult:
    """The answer to a range read: the key-values (iterable), the store
    revision, the total count and whether more keys matched than returned.

    >>> r = c.get_prefix("config/", limit=10)
    >>> r.count, r.more, [kv.key for kv in r]
    """
    @property
    def kvs(self) -> List[KeyValue]:
        """The key-values found."""
    @property
    def revision(self) -> int:
        """The store revision the read was served at."""
    @property
    def count(self) -> int:
        """How many keys matched (with `count_only` or a limit, more than `len(kvs)`)."""
    @property
    def more(self) -> bool:
        """Whether more keys matched than the limit returned."""
    def __len__(self) -> int: ...
    def __getitem__(self, i: int, /) -> KeyValue: ...
    def __iter__(self) -> Iterator[KeyValue]: ...

@final
class PutResult:
    """The answer to a put.

    >>> c.put("k", "v", prev_kv=True).prev_kv
    """
    @property
    def revision(self) -> int:
        """The store revision after the put."""
    @property
    def prev_kv(self) -> Optional[KeyValue]:
        """The previous key-value, when asked for with `prev_kv=True`."""

@final
class DeleteResult:
    """The answer to a delete.

    >>> c.delete_prefix("tmp/").deleted
    """
    @property
    def revision(self) -> int:
        """The store revision after the delete."""
    @property
    def deleted(self) -> int:
        """How many keys were deleted."""
    @property
    def prev_kvs(self) -> List[KeyValue]:
        """The deleted key-values, when asked for with `prev_kv=True`."""
    def __bool__(self) -> bool: ...

@final
class TxnResult:
    """The answer to a transaction: whether the compares held, the store
    revision, and one result per operation of the branch taken
    (`GetResult`, `PutResult`, `DeleteResult` or a nested `TxnResult`).

    >>> r = c.transaction([Compare.version("k") == 0], [Op.put("k", "v")])
    >>> r.succeeded, r.revision
    """
    @property
    def succeeded(self) -> bool:
        """Whether every compare held (so `success` ran)."""
    @property
    def revision(self) -> int:
        """The store revision after the transaction."""
    @property
    def responses(self) -> List[Union[GetResult, PutResult, DeleteResult, TxnResult]]:
        """One result per operation of the branch taken.

        >>> r = c.transaction([], [Op.get("k")])
        >>> r.responses[0].kvs
        """
    def __bool__(self) -> bool: ...

@final
class Event:
    """One change seen by a watch: `type` is `"put"` or `"delete"`.

    >>> for event in c.watch_prefix("config/"):
    ...     print(event.type, event.key, event.value)
    """
    @property
    def type(self) -> str:
        """`"put"` or `"delete"`."""
    @property
    def kv(self) -> KeyValue:
        """The key-value after the change (for a delete: the key, empty value,
        and the delete's revision as `mod_revision`).
        """
    @property
    def prev_kv(self) -> Optional[KeyValue]:
        """The key-value before the change, when the watch asked for `prev_kv`."""
    @property
    def key(self) -> bytes:
        """The key changed.

        >>> kv.key
        """
    @property
    def value(self) -> bytes:
        """The new value (empty for a delete).

        >>> kv.value
        """
    @property
    def revision(self) -> int:
        """The revision of the change.

        >>> event.revision
        """

@final
class Status:
    """One member's status (`Client.status()`).

    >>> s = c.status()
    >>> s.version, s.leader, s.revision
    """
    @property
    def version(self) -> str:
        """The server version, e.g. `"3.4.30"`."""
    @property
    def member_id(self) -> int:
        """The ID of the member that answered."""
    @property
    def leader(self) -> int:
        """The ID of the leader the member knows (0 for none)."""
    @property
    def db_size(self) -> int:
        """The backend size in bytes."""
    @property
    def raft_index(self) -> int:
        """The raft index."""
    @property
    def raft_term(self) -> int:
        """The raft term."""
    @property
    def revision(self) -> int:
        """The store revision."""

@final
class Member:
    """One cluster member (`Client.members()`).

    >>> [(m.name, m.client_urls) for m in c.members()]
    """
    @property
    def id(self) -> int:
        """The member ID."""
    @property
    def name(self) -> str:
        """The member name."""
    @property
    def peer_urls(self) -> List[str]:
        """URLs for peer traffic."""
    @property
    def client_urls(self) -> List[str]:
        """URLs for clients."""
    @property
    def is_learner(self) -> bool:
        """Whether the member is a non-voting learner."""

@final
class Compare:
    """One condition of a transaction, e.g. `Compare.version("k") == 0`.

    >>> c.transaction([Compare.value("k") == "old"], [Op.put("k", "new")])
    """
    @staticmethod
    def value(key: _Bin, *, prefix: bool = False, range_end: Optional[_Bin] = None) -> CompareTarget:
        """Compares the value of `key` (or of every key in the range/prefix).

        >>> Compare.value("k") == "v"
        """
    @staticmethod
    def version(key: _Bin, *, prefix: bool = False, range_end: Optional[_Bin] = None) -> CompareTarget:
        """Compares the version of `key` (0 when it does not exist).

        >>> Compare.version("k") == 0
        """
    @staticmethod
    def create_revision(key: _Bin, *, prefix: bool = False, range_end: Optional[_Bin] = None) -> CompareTarget:
        """Compares the create revision of `key` (0 when it does not exist).

        >>> Compare.create_revision("k") < 100
        """
    @staticmethod
    def mod_revision(key: _Bin, *, prefix: bool = False, range_end: Optional[_Bin] = None) -> CompareTarget:
        """Compares the mod revision of `key`.

        >>> Compare.mod_revision("k") == kv.mod_revision
        """
    @staticmethod
    def lease(key: _Bin, *, prefix: bool = False, range_end: Optional[_Bin] = None) -> CompareTarget:
        """Compares the lease ID attached to `key` (0 for none).

        >>> Compare.lease("k") == lease.id
        """

@final
class CompareTarget:
    """The left side of a compare: a key's value, version, create or mod
    revision, or lease. Compare it with `==`, `!=`, `<` or `>` to get a
    `Compare`.

    >>> Compare.mod_revision("k") > 5
    """
    def __eq__(self, other: object, /) -> Compare: ...  # type: ignore[override]
    def __ne__(self, other: object, /) -> Compare: ...  # type: ignore[override]
    def __lt__(self, other: Union[int, _Bin], /) -> Compare: ...
    def __gt__(self, other: Union[int, _Bin], /) -> Compare: ...
    def __le__(self, other: Union[int, _Bin], /) -> Compare: ...
    def __ge__(self, other: Union[int, _Bin], /) -> Compare: ...

@final
class Op:
    """One operation of a transaction: `Op.get`, `Op.put`, `Op.delete` or a
    nested `Op.txn`.

    >>> c.transaction([], [Op.put("a", "1"), Op.get("b"), Op.delete("c")])
    """
    @staticmethod
    def get(
        key: _Bin,
        *,
        prefix: bool = False,
        range_end: Optional[_Bin] = None,
        limit: Optional[int] = None,
        revision: Optional[int] = None,
        keys_only: bool = False,
        count_only: bool = False,
    ) -> Op: ...
    @staticmethod
    def put(key: _Bin, value: _Bin, *, lease: Optional[int] = None, prev_kv: bool = False) -> Op:
        """Writes `key` inside the transaction.

        >>> Op.put("k", "v", lease=lease.id)
        """
    @staticmethod
    def delete(key: _Bin, *, prefix: bool = False, range_end: Optional[_Bin] = None, prev_kv: bool = False) -> Op:
        """Deletes `key` (or a prefix/range) inside the transaction.

        >>> Op.delete("config/", prefix=True)
        """
    @staticmethod
    def txn(compare: Sequence[Compare], success: Sequence[Op] = ..., failure: Sequence[Op] = ...) -> Op:
        """A nested transaction.

        >>> Op.txn([Compare.version("k") > 0], [Op.delete("k")])
        """

@final
class Watch:
    """A watch, iterated with `for event in watch`. `cancel()` (or leaving a
    `with` block) stops it; the iteration then ends.

    >>> with c.watch_prefix("config/") as w:
    ...     for event in w:
    ...         print(event.type, event.key)
    """
    @property
    def watch_id(self) -> int:
        """The server's watch ID when the watch was created.

        >>> w.watch_id
        """
    def cancel(self) -> None:
        """Stops the watch; iteration ends.

        >>> w.cancel()
        """
    @property
    def resumed_at(self) -> Optional[int]:
        """The revision the watch last resumed from after a disconnect
        (every event before it was delivered), `None` if it never had to.

        >>> w.resumed_at
        """
    @property
    def resume_count(self) -> int:
        """How many times the watch resumed after a disconnect.

        >>> w.resume_count
        """
    def on_resume(self, callback: Callable[[int], object]) -> None:
        """Calls `callback(revision)` each time the watch resumes after a
        disconnect, before the events of that revision are returned. It runs
        on the thread reading the watch (for `AsyncWatch`, a background
        thread, so hand over with `loop.call_soon_threadsafe`).

        >>> w.on_resume(lambda rev: print("resumed from", rev))
        """
    def __iter__(self) -> Watch: ...
    def __next__(self) -> Event: ...
    def __enter__(self) -> Watch: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class AsyncWatch:
    """A watch, iterated with `async for event in watch`.

    >>> async for event in await client.watch_prefix("config/"):
    ...     print(event.type, event.key)
    """
    @property
    def watch_id(self) -> int:
        """The server's watch ID when the watch was created.

        >>> w.watch_id
        """
    def cancel(self) -> None:
        """Stops the watch; iteration ends.

        >>> w.cancel()
        """
    @property
    def resumed_at(self) -> Optional[int]:
        """The revision the watch last resumed from after a disconnect
        (every event before it was delivered), `None` if it never had to.

        >>> w.resumed_at
        """
    @property
    def resume_count(self) -> int:
        """How many times the watch resumed after a disconnect.

        >>> w.resume_count
        """
    def on_resume(self, callback: Callable[[int], object]) -> None:
        """Calls `callback(revision)` each time the watch resumes after a
        disconnect, before the events of that revision are returned. It runs
        on the thread reading the watch (for `AsyncWatch`, a background
        thread, so hand over with `loop.call_soon_threadsafe`).

        >>> w.on_resume(lambda rev: print("resumed from", rev))
        """
    def __aiter__(self) -> AsyncWatch: ...
    def __anext__(self) -> Awaitable[Event]: ...
    def __aenter__(self) -> Awaitable[AsyncWatch]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...

@final
class LeaseInfo:
    """A lease's remaining time and keys (`Lease.time_to_live()`).

    >>> info = lease.time_to_live(keys=True)
    >>> info.ttl, info.keys
    """
    @property
    def id(self) -> int:
        """The lease ID."""
    @property
    def ttl(self) -> int:
        """Seconds left; -1 if the lease has expired or does not exist."""
    @property
    def granted_ttl(self) -> int:
        """The TTL the lease was granted with."""
    @property
    def keys(self) -> List[bytes]:
        """The keys attached (only when asked for with `keys=True`)."""

@final
class LeaseKeeper:
    """Keeps a lease alive in the background (renewing every TTL/3) until `stop()` or the end of a `with` block. Dropping it stops renewal too (the lease then expires).

    >>> with c.lease(10).keep_alive() as keeper:
    ...     keeper.on_lost(lambda reason: print("lost:", reason))
    """
    @property
    def id(self) -> int:
        """The lease ID.

        >>> lease.id
        """
    @property
    def ttl(self) -> int:
        """The TTL in the last renewal answer, in seconds (0 once stopped).

        >>> lease.ttl
        """
    @property
    def lost(self) -> Optional[str]:
        """Why the lease was lost (`"not_found"`, `"ttl_elapsed"`, or
        `"stopped"`), or `None` while it is kept alive.

        >>> keeper.lost is None
        """
    def on_lost(self, callback: Callable[[str], object]) -> None:
        """Calls `callback(reason)` from a background thread when the
        lease is lost (not when the keeper is stopped).

        >>> keeper.on_lost(lambda reason: print("lease lost:", reason))
        """
    def stop(self) -> None:
        """Stops renewing (the lease is not revoked: it expires after its TTL).

        >>> keeper.stop()
        """
    def wait_lost(self, timeout: Optional[float] = None) -> Optional[str]:
        """Blocks until the lease is lost and returns the reason, or returns
        `None` after `timeout` seconds.

        >>> keeper.wait_lost(timeout=5.0)
        """
    def __enter__(self) -> LeaseKeeper: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class AsyncLeaseKeeper:
    """Keeps a lease alive in the background (renewing every TTL/3) until `stop()` or the end of a `with` block. Dropping it stops renewal too (the lease then expires).

    >>> with c.lease(10).keep_alive() as keeper:
    ...     keeper.on_lost(lambda reason: print("lost:", reason))
    """
    @property
    def id(self) -> int:
        """The lease ID.

        >>> lease.id
        """
    @property
    def ttl(self) -> int:
        """The TTL in the last renewal answer, in seconds (0 once stopped).

        >>> lease.ttl
        """
    @property
    def lost(self) -> Optional[str]:
        """Why the lease was lost (`"not_found"`, `"ttl_elapsed"`, or
        `"stopped"`), or `None` while it is kept alive.

        >>> keeper.lost is None
        """
    def on_lost(self, callback: Callable[[str], object]) -> None:
        """Calls `callback(reason)` from a background thread when the
        lease is lost (not when the keeper is stopped).

        >>> keeper.on_lost(lambda reason: print("lease lost:", reason))
        """
    def stop(self) -> None:
        """Stops renewing (the lease is not revoked: it expires after its TTL).

        >>> keeper.stop()
        """
    def wait_lost(self) -> Awaitable[str]:
        """Awaits the loss of the lease and returns the reason.

        >>> keeper.wait_lost(timeout=5.0)
        """
    def __aenter__(self) -> Awaitable[AsyncLeaseKeeper]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...

@final
class Lease:
    """A granted lease. Attach keys with `put(..., lease=lease)`. As a `with` block it is kept alive inside and revoked at the end.

    >>> with c.lease(10) as lease:
    ...     c.put("alive", "1", lease=lease)
    """
    @property
    def id(self) -> int:
        """The lease ID.

        >>> lease.id
        """
    @property
    def ttl(self) -> int:
        """The TTL the server granted, in seconds.

        >>> lease.ttl
        """
    def revoke(self) -> None:
        """Revokes the lease now, deleting every key attached to it.

        >>> lease.revoke()
        """
    def time_to_live(self, *, keys: bool = False) -> LeaseInfo:
        """The remaining TTL (and, with `keys=True`, the attached keys).

        >>> lease.time_to_live(keys=True).keys
        """
    def keep_alive(self) -> LeaseKeeper:
        """Starts keeping the lease alive in the background; returns
        once the first renewal was acknowledged.

        >>> keeper = lease.keep_alive()
        """
    def __enter__(self) -> Lease: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class AsyncLease:
    """A granted lease. Attach keys with `put(..., lease=lease)`. As a `with` block it is kept alive inside and revoked at the end.

    >>> with c.lease(10) as lease:
    ...     c.put("alive", "1", lease=lease)
    """
    @property
    def id(self) -> int:
        """The lease ID.

        >>> lease.id
        """
    @property
    def ttl(self) -> int:
        """The TTL the server granted, in seconds.

        >>> lease.ttl
        """
    def revoke(self) -> Awaitable[None]:
        """Revokes the lease now, deleting every key attached to it.

        >>> lease.revoke()
        """
    def time_to_live(self, *, keys: bool = False) -> Awaitable[LeaseInfo]:
        """The remaining TTL (and, with `keys=True`, the attached keys).

        >>> lease.time_to_live(keys=True).keys
        """
    def keep_alive(self) -> Awaitable[AsyncLeaseKeeper]:
        """Starts keeping the lease alive in the background; returns
        once the first renewal was acknowledged.

        >>> keeper = lease.keep_alive()
        """
    def __aenter__(self) -> Awaitable[AsyncLease]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...

@final
class Lock:
    """A named distributed lock with a fencing token. Not held until `acquire()` or a `with` block.

    >>> with c.lock("jobs/nightly", ttl=10) as lock:
    ...     c.transaction([lock.is_owner()], [Op.put("jobs/out", "done")])
    """
    @property
    def name(self) -> str:
        """The lock name.

        >>> lock.name
        """
    @property
    def fencing_token(self) -> Optional[int]:
        """The fencing token (the lock key's create revision; it grows
        from one holder to the next), or `None` when not held.

        >>> lock.fencing_token
        """
    @property
    def key(self) -> Optional[str]:
        """The lock key (`<name>/<lease id in hex>`), or `None` when not held.

        >>> lock.key
        """
    def acquire(self, timeout: Optional[float] = None) -> bool:
        """Acquires the lock. `timeout=None` waits as long as it takes,
        `0` only tries; returns whether the lock is held.

        >>> if lock.acquire(timeout=5.0):
        ...     lock.release()
        """
    def release(self) -> bool:
        """Releases the lock; returns whether it was held.

        >>> lock.release()
        """
    def is_acquired(self) -> bool:
        """Whether this object holds the lock and its session is alive.

        >>> lock.is_acquired()
        """
    def is_owner(self) -> Compare:
        """A compare that holds only while this lock is held: put it in
        the `compare` list of writes that must happen under the lock.

        >>> c.transaction([lock.is_owner()], [Op.put("out", "guarded")]).succeeded
        """
    def __enter__(self) -> Lock: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class AsyncLock:
    """A named distributed lock with a fencing token. Not held until `acquire()` or a `with` block.

    >>> with c.lock("jobs/nightly", ttl=10) as lock:
    ...     c.transaction([lock.is_owner()], [Op.put("jobs/out", "done")])
    """
    @property
    def name(self) -> str:
        """The lock name.

        >>> lock.name
        """
    @property
    def fencing_token(self) -> Optional[int]:
        """The fencing token (the lock key's create revision; it grows
        from one holder to the next), or `None` when not held.

        >>> lock.fencing_token
        """
    @property
    def key(self) -> Optional[str]:
        """The lock key (`<name>/<lease id in hex>`), or `None` when not held.

        >>> lock.key
        """
    def acquire(self, timeout: Optional[float] = None) -> Awaitable[bool]:
        """Acquires the lock. `timeout=None` waits as long as it takes,
        `0` only tries; returns whether the lock is held.

        >>> if lock.acquire(timeout=5.0):
        ...     lock.release()
        """
    def release(self) -> Awaitable[bool]:
        """Releases the lock; returns whether it was held.

        >>> lock.release()
        """
    def is_acquired(self) -> bool:
        """Whether this object holds the lock and its session is alive.

        >>> lock.is_acquired()
        """
    def is_owner(self) -> Compare:
        """A compare that holds only while this lock is held: put it in
        the `compare` list of writes that must happen under the lock.

        >>> c.transaction([lock.is_owner()], [Op.put("out", "guarded")]).succeeded
        """
    def __aenter__(self) -> Awaitable[AsyncLock]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...

@final
class ServiceInstance:
    """A registered service instance (JSON-compatible with the Rust toolkit).

    >>> [(i.id, i.addr, i.tags, i.health) for i in c.instances("web", tags=["v2"])]
    """
    @property
    def service(self) -> str:
        """The service name."""
    @property
    def id(self) -> str:
        """The instance ID (unique within the service)."""
    @property
    def addrs(self) -> List[str]:
        """The addresses it serves on."""
    @property
    def addr(self) -> str:
        """The first address (`""` if none).

        >>> instance.addr
        """
    @property
    def metadata(self) -> Dict[str, str]:
        """Free-form metadata."""
    @property
    def version(self) -> str:
        """The version it runs."""
    @property
    def health(self) -> str:
        """`"passing"`, `"warning"` or `"critical"` (with checks: the worst of them)."""
    @property
    def tags(self) -> List[str]:
        """Tags subscribers filter on."""
    @property
    def checks(self) -> Dict[str, CheckState]:
        """The states of the health checks its owner runs, by check name
        (empty without checks).
        """

@disjoint_base
class Check:
    """A health check the registering process runs; make one of its
    subclasses and pass it in `register(..., checks=[...])`. Checks start
    critical until their first result (as Consul's do); the instance's
    health is the worst of its checks, and only a change of state is
    written.

    >>> c.register("web", "10.0.0.5:8080", checks=[kvclient.HttpCheck("http://10.0.0.5:8080/health")])
    """
    @property
    def name(self) -> Optional[str]:
        """The name given, or `None`: then `register` names it after its kind
        (`"http"`, `"tcp"`, `"grpc"`, `"cmd"`, `"ttl"`; a second one of a kind
        `"http-2"`). A TTL check's name is what `pass_ttl` takes.
        """
    @property
    def kind(self) -> Literal["http", "tcp", "grpc", "cmd", "ttl"]:
        """`"http"`, `"tcp"`, `"grpc"`, `"cmd"` or `"ttl"`."""
    @property
    def deregister_critical_after(self) -> Optional[float]:
        """Seconds critical after which the instance is deregistered (its lease
        revoked, the registration stopped), or `None`.
        """

@final
class HttpCheck(Check):
    """`GET url` every `interval` seconds: 2xx is passing, 429 warning, anything else (or no answer within `timeout`) critical.

    An `https://` server is verified against `tls_ca_file` (a PEM file of CA certificates; default: the system's roots) for `tls_server_name` (also sent as SNI; default: the URL's host); `tls_skip_verify=True` accepts any certificate (encrypted, but the server is not authenticated). A failed handshake is critical. The TLS settings need an `https://` URL.

    >>> kvclient.HttpCheck("http://127.0.0.1:8080/health", interval=5.0, timeout=2.0, failures_before_critical=3)
    >>> kvclient.HttpCheck("https://10.0.0.5:8443/health", tls_ca_file="/etc/web/ca.pem", tls_server_name="web.internal")
    """
    def __new__(cls, url: str, *, name: Optional[str] = None, interval: float = 10.0, timeout: float = 5.0, success_before_passing: int = 1, failures_before_critical: int = 1, deregister_critical_after: Optional[float] = None, tls_ca_file: Optional[_Path] = None, tls_server_name: Optional[str] = None, tls_skip_verify: bool = False) -> HttpCheck: ...
    @property
    def url(self) -> str:
        """The URL probed."""
    @property
    def tls_ca_file(self) -> Optional[str]:
        """The PEM file of CA certificates an `https://` server is
        verified against, or `None`: the system's roots.
        """
    @property
    def tls_server_name(self) -> Optional[str]:
        """The name an `https://` server's certificate is verified for
        (and sent as SNI), or `None`: the host of the URL or address.
        """
    @property
    def tls_skip_verify(self) -> bool:
        """Whether any server certificate is accepted (encrypted, but
        the server is not authenticated).
        """
    @property
    def interval(self) -> float:
        """Seconds between two probes."""
    @property
    def timeout(self) -> float:
        """Seconds one probe may take (then it counts as critical)."""
    @property
    def success_before_passing(self) -> int:
        """Consecutive passing results needed to turn passing."""
    @property
    def failures_before_critical(self) -> int:
        """Consecutive failing results needed to turn warning or critical."""

@final
class TcpCheck(Check):
    """A TCP connect to `addr` (`host:port`) every `interval` seconds: accepted within `timeout` is passing, else critical.

    >>> kvclient.TcpCheck("127.0.0.1:5432", interval=2.0)
    """
    def __new__(cls, addr: str, *, name: Optional[str] = None, interval: float = 10.0, timeout: float = 5.0, success_before_passing: int = 1, failures_before_critical: int = 1, deregister_critical_after: Optional[float] = None) -> TcpCheck: ...
    @property
    def addr(self) -> str:
        """The address connected to."""
    @property
    def interval(self) -> float:
        """Seconds between two probes."""
    @property
    def timeout(self) -> float:
        """Seconds one probe may take (then it counts as critical)."""
    @property
    def success_before_passing(self) -> int:
        """Consecutive passing results needed to turn passing."""
    @property
    def failures_before_critical(self) -> int:
        """Consecutive failing results needed to turn warning or critical."""

@final
class GrpcCheck(Check):
    """`grpc.health.v1.Health/Check` at `addr` (`host:port` or `http://host:port`; `https://host:port` over TLS) for `service` (`""`: the server as a whole): `SERVING` is passing, else critical.

    An `https://` address is verified as `HttpCheck` verifies an `https://` URL: `tls_ca_file`, `tls_server_name`, `tls_skip_verify`.

    >>> kvclient.GrpcCheck("127.0.0.1:50051", service="my.Service")
    >>> kvclient.GrpcCheck("https://10.0.0.5:50051", tls_ca_file="/etc/rpc/ca.pem")
    """
    def __new__(cls, addr: str, *, service: str = ..., name: Optional[str] = None, interval: float = 10.0, timeout: float = 5.0, success_before_passing: int = 1, failures_before_critical: int = 1, deregister_critical_after: Optional[float] = None, tls_ca_file: Optional[_Path] = None, tls_server_name: Optional[str] = None, tls_skip_verify: bool = False) -> GrpcCheck: ...
    @property
    def addr(self) -> str:
        """The server's address."""
    @property
    def service(self) -> str:
        """The service asked about (`""`: the whole server)."""
    @property
    def tls_ca_file(self) -> Optional[str]:
        """The PEM file of CA certificates an `https://` server is
        verified against, or `None`: the system's roots.
        """
    @property
    def tls_server_name(self) -> Optional[str]:
        """The name an `https://` server's certificate is verified for
        (and sent as SNI), or `None`: the host of the URL or address.
        """
    @property
    def tls_skip_verify(self) -> bool:
        """Whether any server certificate is accepted (encrypted, but
        the server is not authenticated).
        """
    @property
    def interval(self) -> float:
        """Seconds between two probes."""
    @property
    def timeout(self) -> float:
        """Seconds one probe may take (then it counts as critical)."""
    @property
    def success_before_passing(self) -> int:
        """Consecutive passing results needed to turn passing."""
    @property
    def failures_before_critical(self) -> int:
        """Consecutive failing results needed to turn warning or critical."""

@final
class CommandCheck(Check):
    """Runs `argv` (the program, then its arguments; no shell) every `interval` seconds: exit 0 is passing, 1 warning, anything else (or running past `timeout`) critical. Its output (bounded) is the check's output.

    >>> kvclient.CommandCheck(["pg_isready", "-h", "127.0.0.1"], interval=30.0)
    """
    def __new__(cls, argv: Sequence[str], *, name: Optional[str] = None, interval: float = 10.0, timeout: float = 5.0, success_before_passing: int = 1, failures_before_critical: int = 1, deregister_critical_after: Optional[float] = None) -> CommandCheck: ...
    @property
    def argv(self) -> List[str]:
        """The program and its arguments."""
    @property
    def interval(self) -> float:
        """Seconds between two probes."""
    @property
    def timeout(self) -> float:
        """Seconds one probe may take (then it counts as critical)."""
    @property
    def success_before_passing(self) -> int:
        """Consecutive passing results needed to turn passing."""
    @property
    def failures_before_critical(self) -> int:
        """Consecutive failing results needed to turn warning or critical."""

@final
class TtlCheck(Check):
    """A check the application reports itself: each `pass_ttl` / `warn_ttl`
    / `fail_ttl` on the registration holds for `ttl` seconds; without a
    new report it turns critical. Only a change of state is written.

    >>> with c.register("worker", "10.0.0.5:0", checks=[kvclient.TtlCheck(15.0)]) as reg:
    ...     reg.pass_ttl("ttl", note="queue drained")
    """
    def __new__(cls, ttl: float, *, name: Optional[str] = None, deregister_critical_after: Optional[float] = None) -> TtlCheck: ...
    @property
    def ttl(self) -> float:
        """Seconds a report holds."""

@final
class CheckState:
    """A check's state as written in the instance's entry: `health`
    (`"passing"`, `"warning"` or `"critical"`) and the `output` of the probe
    (or the TTL report's note) that set it.

    >>> {name: s.health for name, s in instance.checks.items()}
    """
    @property
    def health(self) -> Literal["passing", "warning", "critical"]:
        """`"passing"`, `"warning"` or `"critical"`."""
    @property
    def output(self) -> str:
        """The output of the probe that set the state (at most 4096 bytes)."""

@final
class ServiceEvent:
    """A change in a subscribed service: `type` is `"added"`, `"updated"` or
    `"removed"` (the initial instances come as `"added"`). In a filtered
    subscription an instance that stops passing the filter (e.g. turns
    critical under `health="passing"`) is `"removed"`, and `"added"` again
    when it passes again.

    >>> for event in c.subscribe("web"):
    ...     print(event.type, event.instance.addr)
    """
    @property
    def type(self) -> str:
        """`"added"`, `"updated"` or `"removed"`."""
    @property
    def instance(self) -> ServiceInstance:
        """The instance (for `"removed"`, its last known entry)."""

@final
class RegistrationEvent:
    """Something that happened to a registration. `type` is one of
    `"registered"`, `"lease_lost"`, `"retry_failed"`, `"reregistered"`,
    `"health_changed"`; the other fields are set when they apply.

    >>> for event in registration:
    ...     if event.type == "reregistered":
    ...         print("back on lease", event.lease)
    """
    @property
    def type(self) -> Literal["registered", "lease_lost", "retry_failed", "reregistered", "health_changed"]:
        """`"registered"`, `"lease_lost"`, `"retry_failed"`, `"reregistered"` or `"health_changed"`."""
    @property
    def lease(self) -> Optional[int]:
        """The lease: the new one (registered, reregistered) or the lost one."""
    @property
    def reason(self) -> Optional[str]:
        """Why the lease was lost: `"not_found"` (revoked or expired) or `"ttl_elapsed"`."""
    @property
    def error(self) -> Optional[str]:
        """The failed attempt's error message (retry_failed)."""
    @property
    def health(self) -> Optional[str]:
        """The new health (health_changed)."""

@final
class Registration:
    """A live registration: the entry is kept on a lease, renewed in the background and written again after the lease is lost. Iterating it yields `RegistrationEvent`s until it stops (closed, or deregistered by a check critical past its `deregister_critical_after`); `close()` (or the end of a `with` block) deregisters.

    >>> with c.register("web", "10.0.0.5:8080") as reg:
    ...     for event in reg:
    ...         print(event.type, event.lease)
    """
    @property
    def key(self) -> str:
        """The entry's key, e.g. `"kv/services/web/<id>"`.

        >>> reg.key
        """
    @property
    def lease_id(self) -> int:
        """The lease the entry is on now (it changes on re-registration).

        >>> reg.lease_id
        """
    @property
    def instance(self) -> Optional[ServiceInstance]:
        """The instance as last written (or being written), or `None` once
        closed or deregistered by a check.

        >>> reg.instance.health
        """
    @property
    def checks(self) -> Dict[str, CheckState]:
        """The states of its health checks by name, as last written (`{}`
        without checks, or once closed).

        >>> {name: state.health for name, state in reg.checks.items()}
        """
    @property
    def stopped(self) -> bool:
        """Whether the registration has stopped: closed, or deregistered
        because a check stayed critical past its `deregister_critical_after`.

        >>> reg.stopped
        """
    def pass_ttl(self, name: str, note: Optional[str] = None) -> None:
        """Reports the TTL check `name` passing (see `TtlCheck`), with an
        optional note as its output. Only a change of state is written.

        >>> reg.pass_ttl("ttl", note="queue drained")
        """
    def warn_ttl(self, name: str, note: Optional[str] = None) -> None:
        """Reports the TTL check `name` warning (the instance stays in
        `health="warning"` subscriptions).

        >>> reg.warn_ttl("ttl", note="queue backing up")
        """
    def fail_ttl(self, name: str, note: Optional[str] = None) -> None:
        """Reports the TTL check `name` critical now (without waiting for
        its TTL to run out).

        >>> reg.fail_ttl("ttl", note="database unreachable")
        """
    def set_health(self, health: str) -> None:
        """Sets the health (`"passing"`, `"warning"`, `"critical"`) and rewrites the entry.

        >>> reg.set_health("warning")
        """
    def close(self) -> None:
        """Deregisters now (revokes the lease, deleting the entry); iteration
        then ends. Closing twice is fine.

        >>> reg.close()
        """
    def __enter__(self) -> Registration: ...
    def __exit__(self, *_args: object) -> bool: ...
    def __iter__(self) -> Registration: ...
    def __next__(self) -> RegistrationEvent: ...

@final
class AsyncRegistration:
    """A live registration (asyncio): as `Registration`, with `async with` and `async for` over its `RegistrationEvent`s.

    >>> async with await client.register("web", "10.0.0.5:8080") as reg:
    ...     async for event in reg:
    ...         print(event.type, event.lease)
    """
    @property
    def key(self) -> str:
        """The entry's key, e.g. `"kv/services/web/<id>"`.

        >>> reg.key
        """
    @property
    def lease_id(self) -> int:
        """The lease the entry is on now (it changes on re-registration).

        >>> reg.lease_id
        """
    @property
    def instance(self) -> Optional[ServiceInstance]:
        """The instance as last written (or being written), or `None` once
        closed or deregistered by a check.

        >>> reg.instance.health
        """
    @property
    def checks(self) -> Dict[str, CheckState]:
        """The states of its health checks by name, as last written (`{}`
        without checks, or once closed).

        >>> {name: state.health for name, state in reg.checks.items()}
        """
    @property
    def stopped(self) -> bool:
        """Whether the registration has stopped: closed, or deregistered
        because a check stayed critical past its `deregister_critical_after`.

        >>> reg.stopped
        """
    def pass_ttl(self, name: str, note: Optional[str] = None) -> Awaitable[None]:
        """Reports the TTL check `name` passing (see `TtlCheck`), with an
        optional note as its output. Only a change of state is written.

        >>> reg.pass_ttl("ttl", note="queue drained")
        """
    def warn_ttl(self, name: str, note: Optional[str] = None) -> Awaitable[None]:
        """Reports the TTL check `name` warning (the instance stays in
        `health="warning"` subscriptions).

        >>> reg.warn_ttl("ttl", note="queue backing up")
        """
    def fail_ttl(self, name: str, note: Optional[str] = None) -> Awaitable[None]:
        """Reports the TTL check `name` critical now (without waiting for
        its TTL to run out).

        >>> reg.fail_ttl("ttl", note="database unreachable")
        """
    def set_health(self, health: str) -> Awaitable[None]:
        """Sets the health (`"passing"`, `"warning"`, `"critical"`) and rewrites the entry.

        >>> reg.set_health("warning")
        """
    def close(self) -> Awaitable[None]:
        """Deregisters now (revokes the lease, deleting the entry); iteration
        then ends. Closing twice is fine.

        >>> reg.close()
        """
    def __aenter__(self) -> Awaitable[AsyncRegistration]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...
    def __aiter__(self) -> AsyncRegistration: ...
    def __anext__(self) -> Awaitable[RegistrationEvent]: ...

@final
class Subscription:
    """The live set of a service's instances (`current()`), and its changes when iterated. `close()` stops it.

    >>> with c.subscribe("web") as sub:
    ...     print(sub.current())
    ...     for event in sub:
    ...         print(event.type, event.instance.id)
    """
    @property
    def revision(self) -> int:
        """The store revision `current()` reflects.

        >>> sub.revision
        """
    def current(self) -> List[ServiceInstance]:
        """The instances live now.

        >>> [i.addr for i in sub.current()]
        """
    def close(self) -> None:
        """Stops the subscription; iteration ends.

        >>> sub.close()
        """
    def __iter__(self) -> Subscription: ...
    def __next__(self) -> ServiceEvent: ...
    def __enter__(self) -> Subscription: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class AsyncSubscription:
    """The live set of a service's instances (`current()`), and its changes when iterated. `close()` stops it.

    >>> with c.subscribe("web") as sub:
    ...     print(sub.current())
    ...     for event in sub:
    ...         print(event.type, event.instance.id)
    """
    @property
    def revision(self) -> int:
        """The store revision `current()` reflects.

        >>> sub.revision
        """
    def current(self) -> List[ServiceInstance]:
        """The instances live now.

        >>> [i.addr for i in sub.current()]
        """
    def close(self) -> None:
        """Stops the subscription; iteration ends.

        >>> sub.close()
        """
    def __aiter__(self) -> AsyncSubscription: ...
    def __anext__(self) -> Awaitable[ServiceEvent]: ...
    def __aenter__(self) -> Awaitable[AsyncSubscription]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...

@final
class Leadership:
    """Leadership won by `campaign`. `resign()` (or the end of a `with` block) lets the next candidate win.

    >>> leadership = election.campaign("10.0.0.5")
    >>> leadership.resign()
    """
    @property
    def key(self) -> str:
        """The leader key.

        >>> leadership.key
        """
    @property
    def revision(self) -> int:
        """The leader key's create revision (a fencing token).

        >>> leadership.revision
        """
    def is_leader(self) -> Compare:
        """A compare that holds only while still leader.

        >>> c.transaction([leadership.is_leader()], [Op.put("primary", "me")])
        """
    def proclaim(self, value: _Bin) -> None:
        """Announces a new value; raises `NotLeaderError` if no longer leader.

        >>> leadership.proclaim("10.0.0.6")
        """
    def resign(self) -> None:
        """Gives up leadership.

        >>> leadership.resign()
        """
    def __enter__(self) -> Leadership: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class AsyncLeadership:
    """Leadership won by `campaign`. `resign()` (or the end of a `with` block) lets the next candidate win.

    >>> leadership = election.campaign("10.0.0.5")
    >>> leadership.resign()
    """
    @property
    def key(self) -> str:
        """The leader key.

        >>> leadership.key
        """
    @property
    def revision(self) -> int:
        """The leader key's create revision (a fencing token).

        >>> leadership.revision
        """
    def is_leader(self) -> Compare:
        """A compare that holds only while still leader.

        >>> c.transaction([leadership.is_leader()], [Op.put("primary", "me")])
        """
    def proclaim(self, value: _Bin) -> Awaitable[None]:
        """Announces a new value; raises `NotLeaderError` if no longer leader.

        >>> leadership.proclaim("10.0.0.6")
        """
    def resign(self) -> Awaitable[None]:
        """Gives up leadership.

        >>> leadership.resign()
        """
    def __aenter__(self) -> Awaitable[AsyncLeadership]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...

@final
class Observer:
    """The election's leader key-value each time it changes (iterate it); `close()` stops it.

    >>> for kv in election.observe():
    ...     print(kv.text)
    """
    def close(self) -> None:
        """Stops observing; iteration ends.

        >>> election.close()
        """
    def __iter__(self) -> Observer: ...
    def __next__(self) -> KeyValue: ...

@final
class AsyncObserver:
    """The election's leader key-value each time it changes (iterate it); `close()` stops it.

    >>> for kv in election.observe():
    ...     print(kv.text)
    """
    def close(self) -> None:
        """Stops observing; iteration ends.

        >>> election.close()
        """
    def __aiter__(self) -> AsyncObserver: ...
    def __anext__(self) -> Awaitable[KeyValue]: ...

@final
class Election:
    """A named election. `campaign(value)` waits until leader and returns the leadership; `leader()` and `observe()` work without campaigning.

    >>> election = c.election("db-primary", ttl=10)
    >>> with election.campaign("10.0.0.5") as leadership:
    ...     leadership.proclaim("10.0.0.5:5432")
    """
    @property
    def name(self) -> str:
        """The election name.

        >>> election.name
        """
    def campaign(self, value: _Bin) -> Leadership:
        """Campaigns with `value`; returns once leader.

        >>> with election.campaign("10.0.0.5") as leadership:
        ...     lead()
        """
    def leader(self) -> KeyValue:
        """The current leader's key-value (value = its proposal); raises
        `NoLeaderError` when nobody campaigns.

        >>> election.leader().text
        """
    def observe(self) -> Observer:
        """Iterates the leader's key-value each time it changes.

        >>> for kv in election.observe():
        ...     print("leader is now", kv.text)
        """
    def close(self) -> None:
        """Ends this election object's session (resigning if leader).

        >>> election.close()
        """

@final
class AsyncElection:
    """A named election. `campaign(value)` waits until leader and returns the leadership; `leader()` and `observe()` work without campaigning.

    >>> election = c.election("db-primary", ttl=10)
    >>> with election.campaign("10.0.0.5") as leadership:
    ...     leadership.proclaim("10.0.0.5:5432")
    """
    @property
    def name(self) -> str:
        """The election name.

        >>> election.name
        """
    def campaign(self, value: _Bin) -> Awaitable[AsyncLeadership]:
        """Campaigns with `value`; returns once leader.

        >>> with election.campaign("10.0.0.5") as leadership:
        ...     lead()
        """
    def leader(self) -> Awaitable[KeyValue]:
        """The current leader's key-value (value = its proposal); raises
        `NoLeaderError` when nobody campaigns.

        >>> election.leader().text
        """
    def observe(self) -> AsyncObserver:
        """Iterates the leader's key-value each time it changes.

        >>> for kv in election.observe():
        ...     print("leader is now", kv.text)
        """
    def close(self) -> Awaitable[None]:
        """Ends this election object's session (resigning if leader).

        >>> election.close()
        """

@final
class Client:
    """A blocking client for kv or any etcd v3 server (method names follow python-etcd3). Every call releases the GIL while it waits; Ctrl-C interrupts it. Method examples use `c` for a `Client`.

    >>> with kvclient.Client(["127.0.0.1:2379"]) as c:
    ...     c.put("config/db", "postgres://...")
    ...     print(c.get("config/db").text)
    """
    def __new__(cls, endpoints: Optional[_Endpoints] = None, *, user: Optional[str] = None, password: Optional[str] = None, ca_cert: Optional[str] = None, cert_cert: Optional[str] = None, cert_key: Optional[str] = None, timeout: Optional[float] = None, connect_timeout: Optional[float] = None) -> Client: ...
    @property
    def endpoints(self) -> List[str]:
        """The endpoints this client balances over.

        >>> c.endpoints
        """
    def get(self, key: _Bin, *, revision: Optional[int] = None, serializable: bool = False) -> Optional[KeyValue]:
        """The key-value at `key`, or `None`.

        >>> c.get("config/db").text
        """
    def get_prefix(self, prefix: _Bin, *, limit: Optional[int] = None, revision: Optional[int] = None, keys_only: bool = False, count_only: bool = False, serializable: bool = False, sort_order: Optional[str] = None, sort_target: Optional[str] = None) -> GetResult:
        """Every key-value under `prefix`.

        >>> [kv.key_text for kv in c.get_prefix("config/")]
        """
    def get_range(self, key: _Bin, range_end: _Bin, *, limit: Optional[int] = None, revision: Optional[int] = None, keys_only: bool = False, count_only: bool = False, serializable: bool = False, sort_order: Optional[str] = None, sort_target: Optional[str] = None) -> GetResult:
        r"""Every key-value in `[key, range_end)` (`range_end=b"\0"`: every key from `key` on).

        >>> c.get_range("a", "c", limit=10).count
        """
    def put(self, key: _Bin, value: _Bin, *, lease: Optional[_LeaseArg] = None, prev_kv: bool = False) -> PutResult:
        """Writes `value` at `key`, optionally on a lease.

        >>> c.put("config/db", "postgres://...", lease=lease).revision
        """
    def delete(self, key: _Bin, *, prev_kv: bool = False) -> DeleteResult:
        """Deletes `key`; the result is true when something was deleted.

        >>> c.delete("config/db")
        """
    def delete_prefix(self, prefix: _Bin, *, prev_kv: bool = False) -> DeleteResult:
        """Deletes every key under `prefix`.

        >>> c.delete_prefix("config/").deleted
        """
    def delete_range(self, key: _Bin, range_end: _Bin, *, prev_kv: bool = False) -> DeleteResult:
        """Deletes every key in `[key, range_end)`.

        >>> c.delete_range("a", "c").deleted
        """
    def transaction(self, compare: Sequence[Compare], success: Sequence[Op] = ..., failure: Sequence[Op] = ...) -> TxnResult:
        """Runs `success` if every compare holds, else `failure`, atomically.

        >>> c.transaction([Compare.version("k") == 0], [Op.put("k", "v")], [Op.get("k")]).succeeded
        """
    def compact(self, revision: int, *, physical: bool = False) -> None:
        """Compacts the history up to `revision`.

        >>> c.compact(c.status().revision)
        """
    def status(self) -> Status:
        """The status of the member that answers.

        >>> c.status().leader
        """
    def members(self) -> List[Member]:
        """The cluster's members.

        >>> [m.name for m in c.members()]
        """
    def watch(self, key: _Bin, *, range_end: Optional[_Bin] = None, start_revision: Optional[int] = None, prev_kv: bool = False, progress_notify: bool = False, no_put: bool = False, no_delete: bool = False) -> Watch:
        """Watches `key` (or `[key, range_end)`); returns once the server confirmed the watch.

        >>> for event in c.watch("config/db", prev_kv=True):
        ...     print(event.type, event.value)
        """
    def watch_prefix(self, prefix: _Bin, *, start_revision: Optional[int] = None, prev_kv: bool = False, progress_notify: bool = False, no_put: bool = False, no_delete: bool = False) -> Watch:
        """Watches every key under `prefix`.

        >>> for event in c.watch_prefix("config/", start_revision=100):
        ...     print(event.key, event.value)
        """
    def lease(self, ttl: int) -> Lease:
        """Grants a lease of `ttl` seconds.

        >>> with c.lease(10) as lease:
        ...     c.put("alive", "1", lease=lease)
        """
    def revoke_lease(self, lease_id: _LeaseArg) -> None:
        """Revokes lease `lease_id`.

        >>> c.revoke_lease(lease.id)
        """
    def leases(self) -> List[int]:
        """The IDs of every lease.

        >>> c.leases()
        """
    def lock(self, name: str, *, ttl: int = 60) -> Lock:
        """A distributed lock named `name` (not acquired yet: call
        `acquire()` or use it in a `with` block). `ttl` is the
        session lease's: a holder that dies loses the lock after it.

        >>> with c.lock("jobs/nightly", ttl=10) as lock:
        ...     print(lock.fencing_token)
        """
    def register(self, service: str, addr: str, *, id: Optional[str] = None, metadata: Optional[Dict[str, str]] = None, version: Optional[str] = None, health: str = 'passing', ttl: int = 10, namespace: str = 'kv', tags: Optional[Sequence[str]] = None, checks: Optional[Sequence[Check]] = None) -> Registration:
        """Registers a service instance; heartbeat and re-registration run in the
        background. `tags` are what subscribers filter on; `checks` are health
        checks this process runs (`HttpCheck`, `TcpCheck`, `GrpcCheck`,
        `CommandCheck`, `TtlCheck`): with checks the instance starts critical and
        its health is the worst check's (`health` is then replaced).

        >>> with c.register("web", "10.0.0.5:8080", tags=["v2"],
        ...                 checks=[kvclient.HttpCheck("http://10.0.0.5:8080/health")]) as reg:
        ...     serve()
        """
    def subscribe(self, service: str, *, namespace: str = 'kv', tags: Optional[Sequence[str]] = None, metadata: Optional[Dict[str, str]] = None, health: _HealthFilter = 'any') -> Subscription:
        """Subscribes to `service`'s live instances: those carrying every tag in
        `tags` and every pair in `metadata`, whose health `health` accepts
        (`"any"`, the default as in Consul; `"warning"`: passing or warning;
        `"passing"`). An instance leaving the filter is reported `"removed"`.

        >>> for event in c.subscribe("web", tags=["v2"], health="passing"):
        ...     print(event.type, event.instance.addr)
        """
    def instances(self, service: str, *, namespace: str = 'kv', tags: Optional[Sequence[str]] = None, metadata: Optional[Dict[str, str]] = None, health: _HealthFilter = 'any') -> List[ServiceInstance]:
        """The instances of `service` registered now, filtered as `subscribe` filters.

        >>> [i.addr for i in c.instances("web", health="passing")]
        """
    def election(self, name: str, *, ttl: int = 60) -> Election:
        """An election named `name`; campaigns run on a session lease of `ttl` seconds.

        >>> with c.election("db-primary").campaign("10.0.0.5") as leadership:
        ...     lead()
        """
    def close(self) -> None:
        """Closes the client: later calls raise `ClosedError`.

        >>> c.close()
        """
    def __enter__(self) -> Client: ...
    def __exit__(self, *_args: object) -> bool: ...

@final
class AsyncClient:
    """The asyncio client: the same methods as `Client`, each returning an awaitable; watches and subscriptions are `async for`, locks, leases and registrations `async with`. The method examples show the blocking form: await each call here.

    >>> async with kvclient.AsyncClient(["127.0.0.1:2379"]) as client:
    ...     await client.put("config/db", "postgres://...")
    ...     print((await client.get("config/db")).text)
    """
    def __new__(cls, endpoints: Optional[_Endpoints] = None, *, user: Optional[str] = None, password: Optional[str] = None, ca_cert: Optional[str] = None, cert_cert: Optional[str] = None, cert_key: Optional[str] = None, timeout: Optional[float] = None, connect_timeout: Optional[float] = None) -> AsyncClient: ...
    @property
    def endpoints(self) -> List[str]:
        """The endpoints this client balances over.

        >>> c.endpoints
        """
    def get(self, key: _Bin, *, revision: Optional[int] = None, serializable: bool = False) -> Awaitable[Optional[KeyValue]]:
        """The key-value at `key`, or `None`.

        >>> c.get("config/db").text
        """
    def get_prefix(self, prefix: _Bin, *, limit: Optional[int] = None, revision: Optional[int] = None, keys_only: bool = False, count_only: bool = False, serializable: bool = False, sort_order: Optional[str] = None, sort_target: Optional[str] = None) -> Awaitable[GetResult]:
        """Every key-value under `prefix`.

        >>> [kv.key_text for kv in c.get_prefix("config/")]
        """
    def get_range(self, key: _Bin, range_end: _Bin, *, limit: Optional[int] = None, revision: Optional[int] = None, keys_only: bool = False, count_only: bool = False, serializable: bool = False, sort_order: Optional[str] = None, sort_target: Optional[str] = None) -> Awaitable[GetResult]:
        r"""Every key-value in `[key, range_end)` (`range_end=b"\0"`: every key from `key` on).

        >>> c.get_range("a", "c", limit=10).count
        """
    def put(self, key: _Bin, value: _Bin, *, lease: Optional[_LeaseArg] = None, prev_kv: bool = False) -> Awaitable[PutResult]:
        """Writes `value` at `key`, optionally on a lease.

        >>> c.put("config/db", "postgres://...", lease=lease).revision
        """
    def delete(self, key: _Bin, *, prev_kv: bool = False) -> Awaitable[DeleteResult]:
        """Deletes `key`; the result is true when something was deleted.

        >>> c.delete("config/db")
        """
    def delete_prefix(self, prefix: _Bin, *, prev_kv: bool = False) -> Awaitable[DeleteResult]:
        """Deletes every key under `prefix`.

        >>> c.delete_prefix("config/").deleted
        """
    def delete_range(self, key: _Bin, range_end: _Bin, *, prev_kv: bool = False) -> Awaitable[DeleteResult]:
        """Deletes every key in `[key, range_end)`.

        >>> c.delete_range("a", "c").deleted
        """
    def transaction(self, compare: Sequence[Compare], success: Sequence[Op] = ..., failure: Sequence[Op] = ...) -> Awaitable[TxnResult]:
        """Runs `success` if every compare holds, else `failure`, atomically.

        >>> c.transaction([Compare.version("k") == 0], [Op.put("k", "v")], [Op.get("k")]).succeeded
        """
    def compact(self, revision: int, *, physical: bool = False) -> Awaitable[None]:
        """Compacts the history up to `revision`.

        >>> c.compact(c.status().revision)
        """
    def status(self) -> Awaitable[Status]:
        """The status of the member that answers.

        >>> c.status().leader
        """
    def members(self) -> Awaitable[List[Member]]:
        """The cluster's members.

        >>> [m.name for m in c.members()]
        """
    def watch(self, key: _Bin, *, range_end: Optional[_Bin] = None, start_revision: Optional[int] = None, prev_kv: bool = False, progress_notify: bool = False, no_put: bool = False, no_delete: bool = False) -> Awaitable[AsyncWatch]:
        """Watches `key` (or `[key, range_end)`); returns once the server confirmed the watch.

        >>> for event in c.watch("config/db", prev_kv=True):
        ...     print(event.type, event.value)
        """
    def watch_prefix(self, prefix: _Bin, *, start_revision: Optional[int] = None, prev_kv: bool = False, progress_notify: bool = False, no_put: bool = False, no_delete: bool = False) -> Awaitable[AsyncWatch]:
        """Watches every key under `prefix`.

        >>> for event in c.watch_prefix("config/", start_revision=100):
        ...     print(event.key, event.value)
        """
    def lease(self, ttl: int) -> Awaitable[AsyncLease]:
        """Grants a lease of `ttl` seconds.

        >>> with c.lease(10) as lease:
        ...     c.put("alive", "1", lease=lease)
        """
    def revoke_lease(self, lease_id: _LeaseArg) -> Awaitable[None]:
        """Revokes lease `lease_id`.

        >>> c.revoke_lease(lease.id)
        """
    def leases(self) -> Awaitable[List[int]]:
        """The IDs of every lease.

        >>> c.leases()
        """
    def lock(self, name: str, *, ttl: int = 60) -> Awaitable[AsyncLock]:
        """A distributed lock named `name` (not acquired yet: call
        `acquire()` or use it in a `with` block). `ttl` is the
        session lease's: a holder that dies loses the lock after it.

        >>> with c.lock("jobs/nightly", ttl=10) as lock:
        ...     print(lock.fencing_token)
        """
    def register(self, service: str, addr: str, *, id: Optional[str] = None, metadata: Optional[Dict[str, str]] = None, version: Optional[str] = None, health: str = 'passing', ttl: int = 10, namespace: str = 'kv', tags: Optional[Sequence[str]] = None, checks: Optional[Sequence[Check]] = None) -> Awaitable[AsyncRegistration]:
        """Registers a service instance; heartbeat and re-registration run in the
        background. `tags` are what subscribers filter on; `checks` are health
        checks this process runs (`HttpCheck`, `TcpCheck`, `GrpcCheck`,
        `CommandCheck`, `TtlCheck`): with checks the instance starts critical and
        its health is the worst check's (`health` is then replaced).

        >>> with c.register("web", "10.0.0.5:8080", tags=["v2"],
        ...                 checks=[kvclient.HttpCheck("http://10.0.0.5:8080/health")]) as reg:
        ...     serve()
        """
    def subscribe(self, service: str, *, namespace: str = 'kv', tags: Optional[Sequence[str]] = None, metadata: Optional[Dict[str, str]] = None, health: _HealthFilter = 'any') -> Awaitable[AsyncSubscription]:
        """Subscribes to `service`'s live instances: those carrying every tag in
        `tags` and every pair in `metadata`, whose health `health` accepts
        (`"any"`, the default as in Consul; `"warning"`: passing or warning;
        `"passing"`). An instance leaving the filter is reported `"removed"`.

        >>> for event in c.subscribe("web", tags=["v2"], health="passing"):
        ...     print(event.type, event.instance.addr)
        """
    def instances(self, service: str, *, namespace: str = 'kv', tags: Optional[Sequence[str]] = None, metadata: Optional[Dict[str, str]] = None, health: _HealthFilter = 'any') -> Awaitable[List[ServiceInstance]]:
        """The instances of `service` registered now, filtered as `subscribe` filters.

        >>> [i.addr for i in c.instances("web", health="passing")]
        """
    def election(self, name: str, *, ttl: int = 60) -> Awaitable[AsyncElection]:
        """An election named `name`; campaigns run on a session lease of `ttl` seconds.

        >>> with c.election("db-primary").campaign("10.0.0.5") as leadership:
        ...     lead()
        """
    def close(self) -> None:
        """Closes the client: later calls raise `ClosedError`.

        >>> c.close()
        """
    def connect(self) -> Awaitable[None]:
        """Connects (and authenticates) now.

        >>> await client.connect()
        """
    def __aenter__(self) -> Awaitable[AsyncClient]: ...
    def __aexit__(self, *_args: object) -> Awaitable[bool]: ...
