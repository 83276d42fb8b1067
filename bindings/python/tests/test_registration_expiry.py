"""A subscription sees an instance leave when its registration's lease
EXPIRES: the registering process is frozen (SIGSTOP), so its heartbeats
stop while its connection stays open and nothing deregisters. kvd must
expire the lease on its own and the subscription must report the removal;
once thawed (SIGCONT) the registration finds its lease gone and registers
again, which the subscription reports as added. Both the blocking and the
asyncio subscription."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import pytest

import kvclient
from kvclient.aio import Client as AsyncClient
from conftest import Server

TTL = 2
# Long enough for the lease to expire and the subscription to see it, with
# room for a loaded machine; pytest's own timeout (60 s) is the backstop.
EVENT_TIMEOUT = 30.0

CHILD = textwrap.dedent(
    """
    import sys, time, kvclient
    c = kvclient.Client([sys.argv[1]])
    r = c.register(sys.argv[2], "10.0.0.7:80", id="frozen", ttl=int(sys.argv[3]))
    print(r.lease_id, flush=True)
    time.sleep(600)
    """
)


class Registrant:
    """A child process holding one registration with a short TTL."""

    def __init__(self, endpoint: str, service: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, endpoint, service, str(TTL)],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.lease_id = int(self.proc.stdout.readline())

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def service(prefix: str) -> str:
    return "exp" + prefix.replace("/", "")[-8:]


def test_subscription_sees_expiry_sync(kvd: Server, service: str) -> None:
    c = kvclient.Client([kvd.endpoint])
    sub = c.subscribe(service)
    reg = Registrant(kvd.endpoint, service)
    try:
        ev = next(sub)
        assert (ev.type, ev.instance.id) == ("added", "frozen")
        reg.freeze()  # no heartbeats from here on; the connection stays open
        ev = next(sub)
        assert (ev.type, ev.instance.id) == ("removed", "frozen")
        assert c.instances(service) == []
        assert reg.lease_id not in c.leases()  # expired, not just the key deleted
        reg.thaw()  # its keeper finds the lease gone and registers again
        ev = next(sub)
        assert (ev.type, ev.instance.id) == ("added", "frozen")
        assert [i.id for i in sub.current()] == ["frozen"]
    finally:
        reg.close()
        sub.close()


def test_subscription_sees_expiry_asyncio(kvd: Server, service: str) -> None:
    async def main() -> None:
        async with AsyncClient([kvd.endpoint]) as c:
            sub = await c.subscribe(service)

            async def next_event() -> kvclient.ServiceEvent:
                return await asyncio.wait_for(sub.__anext__(), EVENT_TIMEOUT)

            reg = Registrant(kvd.endpoint, service)
            try:
                ev = await next_event()
                assert (ev.type, ev.instance.id) == ("added", "frozen")
                reg.freeze()
                ev = await next_event()
                assert (ev.type, ev.instance.id) == ("removed", "frozen")
                assert await c.instances(service) == []
                assert reg.lease_id not in await c.leases()
                reg.thaw()
                ev = await next_event()
                assert (ev.type, ev.instance.id) == ("added", "frozen")
            finally:
                reg.close()
                sub.close()

    asyncio.run(main())
