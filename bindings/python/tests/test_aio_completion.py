"""How asyncio results come back: through one completion queue per event
loop (one reader registered per loop, no call_soon_threadsafe per result),
with a fallback for loops that cannot watch a descriptor; per-loop
routing, cancellation and descriptor cleanup, on real kvd processes."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import Any, Callable, Coroutine, List, Type

import pytest

import kvclient
from kvclient.aio import Client
from conftest import Server


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts what the package asks of the loop (from any thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.threadsafe_calls = 0
        self.readers_added = 0
        self.count_lock = threading.Lock()

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> Any:
        with self.count_lock:
            self.threadsafe_calls += 1
        return super().call_soon_threadsafe(*args, **kwargs)

    def add_reader(self, *args: Any) -> None:
        self.readers_added += 1
        super().add_reader(*args)


class NoReaderLoop(CountingLoop):
    """A loop that cannot watch descriptors (as Windows' proactor loop)."""

    def add_reader(self, *args: Any) -> None:
        raise NotImplementedError


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


async def traffic(c: Client, prefix: str, n: int) -> None:
    """n concurrent puts, then gets, then failing calls: every result and
    every error reaches the right awaiter."""
    puts = await asyncio.gather(*(c.put(f"{prefix}{i}", str(i)) for i in range(n)))
    assert len({p.revision for p in puts}) == n
    kvs = await asyncio.gather(*(c.get(f"{prefix}{i}") for i in range(n)))
    assert [kv.text if kv else None for kv in kvs] == [str(i) for i in range(n)]
    ahead = max(p.revision for p in puts) + 1_000_000
    errors = await asyncio.gather(*(c.get(prefix + "0", revision=ahead) for _ in range(8)), return_exceptions=True)
    assert all(isinstance(e, kvclient.FutureRevisionError) for e in errors), errors


def test_results_come_through_one_reader_per_loop(kvd: Server, prefix: str) -> None:
    loop = CountingLoop()

    async def main() -> None:
        async with Client([kvd.endpoint]) as c:
            await traffic(c, prefix, 200)
            await traffic(c, prefix + "again/", 50)

    run_on(loop, main())
    # One registration for the whole run, and no thread hand-off per result
    # (before the queue: one call_soon_threadsafe per call, 500 here).
    assert loop.readers_added == 1
    assert loop.threadsafe_calls == 0


def test_loop_without_add_reader_falls_back(kvd: Server, prefix: str) -> None:
    loop = NoReaderLoop()

    async def main() -> None:
        async with Client([kvd.endpoint]) as c:
            await traffic(c, prefix, 100)

    run_on(loop, main())
    assert loop.threadsafe_calls > 0


def test_loops_on_two_threads_get_their_own_results(kvd: Server, prefix: str) -> None:
    # Debug loops raise if a result is set from another loop's thread, and
    # the awaiter then never wakes: wait_for turns that into a failure.
    c = Client([kvd.endpoint])
    failures: List[BaseException] = []

    def worker(name: str) -> None:
        loop = asyncio.new_event_loop()
        loop.set_debug(True)
        try:
            for _ in range(3):
                loop.run_until_complete(asyncio.wait_for(traffic(c, f"{prefix}{name}/", 100), 60))
        except BaseException as e:  # reported by the main thread
            failures.append(e)
        finally:
            loop.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    assert failures == []


@pytest.mark.parametrize("loop_class", [CountingLoop, NoReaderLoop])
def test_cancelled_call_stops_its_rust_future(kvd: Server, prefix: str, loop_class: Type[CountingLoop]) -> None:
    async def main() -> None:
        async with Client([kvd.endpoint]) as c:
            name = prefix + "lk"
            holder = await c.lock(name, ttl=10)
            assert await holder.acquire() is True
            waiter = await c.lock(name, ttl=10)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(waiter.acquire(), 0.3)
            await holder.release()
            # The waiter queued first: had its acquire kept running after the
            # cancel, it would take the lock now and this would time out.
            third = await c.lock(name, ttl=10)
            assert await third.acquire(timeout=10) is True
            assert waiter.fencing_token is None
            assert await third.release() is True

    run_on(loop_class(), main())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_closed_loops_release_their_queue(kvd: Server, prefix: str) -> None:
    c = Client([kvd.endpoint])
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop

    async def some_calls(i: int) -> None:
        await asyncio.gather(*(c.put(f"{prefix}{i}/{j}", "v") for j in range(20)))

    run_on(factory(), some_calls(0))  # connections made, first queue cached
    gc.collect()
    before = open_fds()
    for i in range(1, 21):
        run_on(factory(), some_calls(i))
    gc.collect()
    # Each loop's queue holds a socket pair: 20 loops leaking theirs would
    # leave 40 more descriptors; the thread keeps only the last loop's.
    assert open_fds() - before <= 4
    c.close()
