"""Locks, registrations, subscriptions and elections, sync API, on kvd.
Multi-process tests run real child interpreters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import List

import pytest

import kvclient
from kvclient import Op
from conftest import Server


def test_lock_fencing_and_try(kvd: Server, prefix: str) -> None:
    c = kvclient.Client([kvd.endpoint])
    a = c.lock(prefix + "lk", ttl=10)
    b = c.lock(prefix + "lk", ttl=10)
    assert a.fencing_token is None and not a.is_acquired()
    with a:
        assert a.is_acquired() and a.key and a.key.startswith(prefix + "lk/")
        first = a.fencing_token
        assert first is not None
        assert b.acquire(timeout=0) is False
        assert b.acquire(timeout=0.3) is False
        with pytest.raises(kvclient.InvalidArgumentError):
            b.acquire(timeout=float("nan"))
        guarded = c.transaction(compare=[a.is_owner()], success=[Op.put(prefix + "guarded", "a")])
        assert guarded.succeeded
    assert not a.is_acquired()
    assert b.acquire(timeout=5) is True
    assert b.fencing_token is not None and first is not None and b.fencing_token > first
    # The old holder's guard no longer matches.
    stale = c.transaction(compare=[kvclient.Compare.create_revision(str(a.key or prefix + "lk/x")) == first], success=[])
    assert not stale.succeeded
    assert b.release() is True
    assert b.release() is False
    with pytest.raises(kvclient.InvalidArgumentError):
        b.is_owner()


WORKER = """
import sys, kvclient
ep, key, lock, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = kvclient.Client([ep])
for _ in range(n):
    with c.lock(lock, ttl=10):
        kv = c.get(key)
        v = int(kv.text) if kv else 0
        c.put(key, str(v + 1))
"""


def test_lock_mutual_exclusion_across_processes(kvd: Server, prefix: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, kvd.endpoint, prefix + "counter", prefix + "mx", "15"])
        for _ in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    c = kvclient.Client([kvd.endpoint])
    kv = c.get(prefix + "counter")
    # A lost update (two holders at once) would leave fewer than 60.
    assert kv is not None and kv.text == "60"


def test_register_subscribe_and_kill9(kvd: Server, prefix: str) -> None:
    service = "svc" + prefix.replace("/", "")[-8:]
    c = kvclient.Client([kvd.endpoint])
    sub = c.subscribe(service)
    assert sub.current() == []
    mine = c.register(service, "10.0.0.1:80", id="a", metadata={"zone": "a"}, ttl=10)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time, kvclient
                c = kvclient.Client([sys.argv[1]])
                r = c.register(sys.argv[2], "10.0.0.2:80", id="b", ttl=2)
                print("registered", flush=True)
                time.sleep(600)
                """
            ),
            kvd.endpoint,
            service,
        ],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"registered"
    events = []
    while {e.instance.id for e in events if e.type == "added"} != {"a", "b"}:
        events.append(next(sub))
    assert sorted(i.id for i in sub.current()) == ["a", "b"]
    a = next(i for i in sub.current() if i.id == "a")
    assert a.metadata == {"zone": "a"} and a.addr == "10.0.0.1:80" and a.health == "passing"
    child.kill()  # SIGKILL: no deregistration, the lease must expire
    child.wait()
    child.stdout.close()
    ev = next(sub)
    assert (ev.type, ev.instance.id) == ("removed", "b")
    assert [i.id for i in c.instances(service)] == ["a"]
    mine.set_health("warning")
    ev = next(sub)
    assert (ev.type, ev.instance.id, ev.instance.health) == ("updated", "a", "warning")
    mine.close()
    ev = next(sub)
    assert (ev.type, ev.instance.id) == ("removed", "a")
    sub.close()
    assert list(sub) == []


def test_reregistration_after_lease_loss(kvd: Server, prefix: str) -> None:
    service = "rr" + prefix.replace("/", "")[-8:]
    c = kvclient.Client([kvd.endpoint])
    with c.register(service, "10.0.0.3:80", id="x", ttl=2) as reg:
        first = reg.lease_id
        sub = c.subscribe(service)
        assert next(sub).type == "added"
        c.revoke_lease(first)  # the entry goes with the lease...
        assert (next(sub).type) == "removed"
        ev = next(sub)  # ...and comes back on a new one
        assert (ev.type, ev.instance.id) == ("added", "x")
        entry = c.get(reg.key)
        assert entry is not None and entry.lease not in (0, first)
        assert reg.instance is not None and reg.instance.id == "x"
        sub.close()
    assert c.instances(service) == []


def test_election_campaign_proclaim_observe_resign(kvd: Server, prefix: str) -> None:
    c = kvclient.Client([kvd.endpoint])
    e1 = c.election(prefix + "el", ttl=10)
    e2 = c.election(prefix + "el", ttl=10)
    with pytest.raises(kvclient.NoLeaderError):
        e1.leader()
    obs = e2.observe()
    lead = e1.campaign("node-1")
    assert lead.key.startswith(prefix + "el/") and lead.revision > 0
    assert e2.leader().text == "node-1"
    assert next(obs).text == "node-1"
    lead.proclaim("node-1b")
    assert next(obs).text == "node-1b"
    assert c.transaction(compare=[lead.is_leader()], success=[]).succeeded
    got: List[kvclient.Leadership] = []
    import threading

    t = threading.Thread(target=lambda: got.append(e2.campaign("node-2")))
    t.start()
    lead.resign()
    t.join(timeout=30)
    assert got and e1.leader().text == "node-2"
    assert next(obs).text == "node-2"
    with pytest.raises(kvclient.ClosedError):
        lead.proclaim("stale")  # resigned
    c.delete(got[0].key)  # someone removed the leader key
    with pytest.raises(kvclient.NotLeaderError):
        got[0].proclaim("stale")
    got[0].resign()
    obs.close()
    e1.close()
    e2.close()


def test_dropped_lock_is_released_in_the_background(kvd: Server, prefix: str) -> None:
    import gc

    c = kvclient.Client([kvd.endpoint])
    held = c.lock(prefix + "drop", ttl=60)
    assert held.acquire(timeout=5)
    del held  # garbage-collected while held: unlock and revoke run in the background
    gc.collect()
    other = c.lock(prefix + "drop", ttl=60)
    # Far below the 60 s TTL: only the background release lets this succeed.
    assert other.acquire(timeout=15) is True
    assert other.release()
