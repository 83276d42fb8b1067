"""Registration events (lease lost, re-registered, health changed) and the
watch resume signal, sync and asyncio, against real kvd processes."""

from __future__ import annotations

import asyncio
import threading
from typing import List, Tuple

import kvclient
from kvclient.aio import Client as AsyncClient
from conftest import Server


def _next_of(reg: kvclient.Registration, kind: str) -> kvclient.RegistrationEvent:
    """The next event of `kind`; a failed re-registration attempt may come
    before a success (it is retried), nothing else may."""
    for ev in reg:
        if ev.type == kind:
            return ev
        assert ev.type == "retry_failed", ev
    raise AssertionError(f"the events ended before {kind!r}")


def test_registration_events_on_lease_loss_and_health(kvd: Server, prefix: str) -> None:
    service = "ev" + prefix.replace("/", "")[-8:]
    c = kvclient.Client([kvd.endpoint])
    reg = c.register(service, "10.0.0.4:80", id="e1", ttl=2)
    first = reg.lease_id
    ev = next(reg)
    assert (ev.type, ev.lease, ev.reason) == ("registered", first, None)

    c.revoke_lease(first)
    lost = _next_of(reg, "lease_lost")
    assert (lost.lease, lost.reason) == (first, "not_found")
    back = _next_of(reg, "reregistered")
    assert back.lease is not None and back.lease != first
    assert reg.lease_id == back.lease
    entry = c.get(reg.key)
    assert entry is not None and entry.lease == back.lease

    reg.set_health("warning")
    ev = next(reg)
    assert (ev.type, ev.health) == ("health_changed", "warning")
    assert reg.instance is not None and reg.instance.health == "warning"

    reg.close()
    assert list(reg) == []  # closing ends the iteration
    assert reg.instance is None
    reg.close()  # twice is fine
    assert c.instances(service) == []
    c.close()


def test_async_registration_events(kvd: Server, prefix: str) -> None:
    service = "ae" + prefix.replace("/", "")[-8:]

    async def main() -> None:
        async with AsyncClient([kvd.endpoint]) as c:
            async with await c.register(service, "10.0.0.5:80", id="a1", ttl=2) as reg:
                first = reg.lease_id
                kinds: List[str] = []
                async for ev in reg:
                    kinds.append(ev.type)
                    if ev.type == "registered":
                        await c.revoke_lease(first)
                    if ev.type == "reregistered":
                        assert ev.lease == reg.lease_id != first
                        break
                assert [k for k in kinds if k != "retry_failed"] == [
                    "registered",
                    "lease_lost",
                    "reregistered",
                ]
            assert [ev async for ev in reg] == []
            assert await c.instances(service) == []

    asyncio.run(main())


def test_watch_reports_resume_across_kvd_restart(fresh_kvd: Server) -> None:
    writer = kvclient.Client([fresh_kvd.endpoint])
    watcher = kvclient.Client([fresh_kvd.endpoint])
    w = watcher.watch_prefix("r/")
    seen: List[Tuple[str, int]] = []
    w.on_resume(lambda rev: seen.append(("resumed", rev)))
    revs = [writer.put(f"r/{i}", str(i)).revision for i in range(5)]
    for _ in range(5):
        seen.append(("event", next(w).revision))
    assert (w.resumed_at, w.resume_count) == (None, 0)

    fresh_kvd.restart()
    revs += [writer.put(f"r/{i}", str(i)).revision for i in range(5, 10)]
    for _ in range(5):
        seen.append(("event", next(w).revision))
    w.cancel()
    # Resumed once, right after the last revision delivered before the
    # restart, and announced before the events from there on.
    expected = [("event", r) for r in revs[:5]] + [("resumed", revs[4] + 1)]
    expected += [("event", r) for r in revs[5:]]
    assert seen == expected
    assert (w.resumed_at, w.resume_count) == (revs[4] + 1, 1)
    writer.close()
    watcher.close()


def test_async_watch_reports_resume_across_kvd_restart(fresh_kvd: Server) -> None:
    async def main() -> None:
        async with AsyncClient([fresh_kvd.endpoint]) as writer, AsyncClient(
            [fresh_kvd.endpoint]
        ) as watcher:
            w = await watcher.watch_prefix("a/")
            called = threading.Event()
            w.on_resume(lambda rev: called.set())
            revs = [(await writer.put(f"a/{i}", "x")).revision for i in range(3)]
            got = [(await w.__anext__()).revision for _ in range(3)]
            await asyncio.get_running_loop().run_in_executor(None, fresh_kvd.restart)
            revs += [(await writer.put(f"a/{i}", "y")).revision for i in range(3, 6)]
            got += [(await w.__anext__()).revision for _ in range(3)]
            w.cancel()
            assert got == revs
            assert (w.resumed_at, w.resume_count) == (revs[2] + 1, 1)
            assert called.is_set()

    asyncio.run(main())
