"""Interpreter exit with live streams, Ctrl-C during a blocking wait, and
fork after import: real child interpreters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import kvclient
from conftest import Server

LIVE = textwrap.dedent(
    """
    import sys, threading, kvclient
    c = kvclient.Client([sys.argv[1]])
    w = c.watch_prefix("exit/")
    keeper = c.lease(10).keep_alive()
    reg = c.register("exitsvc", "127.0.0.1:1", ttl=10)
    sub = c.subscribe("exitsvc")
    lock = c.lock(sys.argv[2]); lock.acquire()
    keeper.on_lost(lambda reason: None)
    # A thread blocked in a watch while the main thread exits.
    threading.Thread(target=lambda: list(w), daemon=True).start()
    print("ready", flush=True)
    """
)


@pytest.mark.parametrize("how", ["return", "sys.exit"])
def test_exit_with_live_streams_is_clean(kvd: Server, how: str) -> None:
    code = LIVE + ("import sys; sys.exit(0)\n" if how == "sys.exit" else "")
    # A lock name of its own: the holder exits without releasing it.
    p = subprocess.run(
        [sys.executable, "-c", code, kvd.endpoint, f"exit/{uuid.uuid4().hex}"], capture_output=True, timeout=30
    )
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.strip() == b"ready"
    assert b"panic" not in p.stderr and b"Fatal" not in p.stderr


def test_async_exit_with_pending_awaits_is_clean(kvd: Server) -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys, kvclient
        async def main():
            c = kvclient.AsyncClient([sys.argv[1]])
            w = await c.watch_prefix("aexit/")
            asyncio.ensure_future(w.__anext__())
            await asyncio.sleep(0.1)
            print("ready", flush=True)
        asyncio.run(main())
        """
    )
    p = subprocess.run([sys.executable, "-c", code, kvd.endpoint], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.strip() == b"ready"


IN_FLIGHT = textwrap.dedent(
    """
    import asyncio, sys, kvclient
    async def main():
        c = kvclient.AsyncClient([sys.argv[1]])
        await asyncio.gather(*(c.get(f"inflight/{i}") for i in range(200)))
        for i in range(200):
            asyncio.ensure_future(c.get(f"inflight/{i}"))  # still running at exit
        await asyncio.sleep(0)
    asyncio.run(main())
    """
)


def test_exit_with_asyncio_calls_in_flight_never_crashes(kvd: Server) -> None:
    # Completions racing interpreter finalization used to crash the process
    # (SIGSEGV) in about one run of three; each run is a fresh interpreter.
    for _ in range(15):
        p = subprocess.run([sys.executable, "-c", IN_FLIGHT, kvd.endpoint], capture_output=True, timeout=30)
        assert p.returncode == 0, (p.returncode, p.stderr.decode()[-2000:])


def test_ctrl_c_interrupts_blocking_watch(kvd: Server) -> None:
    code = textwrap.dedent(
        """
        import sys, kvclient
        c = kvclient.Client([sys.argv[1]])
        w = c.watch("never/")
        try:
            print("waiting", flush=True)
            next(w)  # no event ever comes: only Ctrl-C ends this
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code, kvd.endpoint], stdout=subprocess.PIPE)
    assert p.stdout is not None
    try:
        assert p.stdout.readline().strip() == b"waiting"
        time.sleep(0.5)  # let it block in next(); any moment inside `try` passes
        p.send_signal(signal.SIGINT)
        # Without signal checks in the blocking wait this never returns.
        assert p.wait(timeout=20) == 3
        assert p.stdout.read().strip() == b"interrupted"
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_child_with_its_own_client(kvd: Server) -> None:
    # The README's rule: a forked child makes its own clients (it must not
    # use the parent's); it gets a runtime of its own, for sync and asyncio.
    code = textwrap.dedent(
        """
        import os, sys, kvclient
        parent = kvclient.Client([sys.argv[1]])
        parent.put("fork/k", "parent")
        pid = os.fork()
        if pid == 0:
            import signal
            signal.alarm(20)  # never outlive the test, even if this hangs
            child = kvclient.Client([sys.argv[1]])
            child.put("fork/k", "child")
            ok = child.get("fork/k").text == "child"
            async def aio():
                return (await kvclient.AsyncClient([sys.argv[1]]).get("fork/k")).text
            import asyncio
            ok = ok and asyncio.run(aio()) == "child"
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    p = subprocess.run([sys.executable, "-c", code, kvd.endpoint], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
