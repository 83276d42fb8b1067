"""The asyncio API: the same names, awaited; watches and subscriptions as
`async for`, locks/leases/registrations as `async with`."""

from __future__ import annotations

import asyncio
from typing import List

import pytest

import kvclient
from kvclient import Compare, Op
from kvclient.aio import Client
from conftest import Server


def run(coro: "asyncio.Future[None] | object") -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_kv_txn_and_errors(server: Server, prefix: str) -> None:
    async def main() -> None:
        async with Client([server.endpoint]) as c:
            r = await c.put(prefix + "a", "1")
            assert r.revision > 0
            kv = await c.get(prefix + "a")
            assert kv is not None and kv.text == "1"
            assert await c.get(prefix + "none") is None
            await c.put(prefix + "b", b"2")
            assert [x.text for x in await c.get_prefix(prefix)] == ["1", "2"]
            assert len(await c.get_range(prefix + "a", prefix + "b")) == 1
            t = await c.transaction(compare=[Compare.value(prefix + "a") == "1"], success=[Op.put(prefix + "a", "x")])
            assert t.succeeded
            assert (await c.delete(prefix + "a")).deleted == 1
            assert (await c.delete_prefix(prefix)).deleted == 1
            assert (await c.status()).leader != 0
            assert len(await c.members()) == 1
            rev = (await c.put(prefix + "c", "1")).revision
            await c.put(prefix + "c", "2")
            await c.compact(rev + 1)
            with pytest.raises(kvclient.CompactedError):
                await c.get(prefix + "c", revision=rev)
            # Many concurrent calls on one client.
            rs = await asyncio.gather(*(c.put(f"{prefix}g{i}", str(i)) for i in range(64)))
            assert len({r.revision for r in rs}) == 64

    run(main())


def test_async_watch_and_cancel(server: Server, prefix: str) -> None:
    async def main() -> None:
        async with Client([server.endpoint]) as c:
            w = await c.watch_prefix(prefix, prev_kv=True)
            for i in range(3):
                await c.put(f"{prefix}{i}", str(i))
            got: List[kvclient.Event] = []
            async for e in w:
                got.append(e)
                if len(got) == 3:
                    break
            assert [e.value for e in got] == [b"0", b"1", b"2"]
            idle = await c.watch(prefix + "idle")
            task = asyncio.ensure_future(idle.__anext__())
            await asyncio.sleep(0.1)
            idle.cancel()
            with pytest.raises(StopAsyncIteration):
                await task
            async with await c.watch(prefix + "x") as w2:
                await c.put(prefix + "x", "v")
                e = await w2.__anext__()
                assert e.type == "put"
            # Cancelling the awaiting task (asyncio.wait_for) drops the Rust wait.
            w3 = await c.watch(prefix + "never")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(w3.__anext__(), 0.2)
            w3.cancel()

    run(main())


def test_async_lease_keeper(server: Server, prefix: str) -> None:
    async def main() -> None:
        async with Client([server.endpoint]) as c:
            lease = await c.lease(5)
            await c.put(prefix + "l", "v", lease=lease)
            keeper = await lease.keep_alive()
            async with keeper:
                assert keeper.lost is None
                await c.revoke_lease(lease.id)
                assert await asyncio.wait_for(keeper.wait_lost(), 10) == "not_found"
            assert await c.get(prefix + "l") is None
            async with await c.lease(10) as l2:
                info = await l2.time_to_live()
                assert info.ttl > 0
            assert (await l2.time_to_live()).ttl == -1

    run(main())


def test_async_lock_registry_election(kvd: Server, prefix: str) -> None:
    async def main() -> None:
        async with Client([kvd.endpoint]) as c:
            lock = await c.lock(prefix + "lk", ttl=10)
            other = await c.lock(prefix + "lk", ttl=10)
            async with lock:
                assert lock.fencing_token is not None
                assert await other.acquire(timeout=0) is False
            assert await other.acquire(timeout=5) is True
            assert await other.release() is True

            service = "as" + prefix.replace("/", "")[-8:]
            sub = await c.subscribe(service)
            async with await c.register(service, "10.0.0.9:1", id="i1", ttl=5):
                ev = await sub.__anext__()
                assert (ev.type, ev.instance.id) == ("added", "i1")
            ev = await sub.__anext__()
            assert (ev.type, ev.instance.id) == ("removed", "i1")
            assert await c.instances(service) == []
            sub.close()

            e = await c.election(prefix + "el", ttl=10)
            async with await e.campaign("me") as lead:
                assert (await e.leader()).text == "me"
                await lead.proclaim("me2")
                obs = e.observe()
                assert (await obs.__anext__()).text == "me2"
                obs.close()
            with pytest.raises(kvclient.NoLeaderError):
                await e.leader()
            await e.close()

    run(main())
