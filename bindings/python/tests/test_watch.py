"""Watches, sync API: iteration, options, cancel, compaction, resume
across a kvd restart."""

from __future__ import annotations

import threading
from typing import List

import pytest

import kvclient
from conftest import Server


def test_watch_key_sees_puts_and_deletes(client: kvclient.Client, prefix: str) -> None:
    k = prefix + "w"
    with client.watch(k, prev_kv=True) as w:
        client.put(k, "1")
        client.put(prefix + "other", "x")
        client.put(k, "2")
        client.delete(k)
        events = [next(w), next(w), next(w)]
    assert [e.type for e in events] == ["put", "put", "delete"]
    assert [e.value for e in events] == [b"1", b"2", b""]
    assert events[1].prev_kv is not None and events[1].prev_kv.value == b"1"
    assert events[2].key == k.encode()
    assert events[0].revision < events[1].revision < events[2].revision


def test_watch_prefix_from_revision_replays(client: kvclient.Client, prefix: str) -> None:
    first = client.put(prefix + "a", "1").revision
    client.put(prefix + "b", "2")
    client.delete(prefix + "a")
    w = client.watch_prefix(prefix, start_revision=first)
    got = [next(w) for _ in range(3)]
    w.cancel()
    assert [(e.type, e.key) for e in got] == [
        ("put", (prefix + "a").encode()),
        ("put", (prefix + "b").encode()),
        ("delete", (prefix + "a").encode()),
    ]
    assert list(w) == []  # canceled: iteration ends


def test_watch_filters_and_range(client: kvclient.Client, prefix: str) -> None:
    w = client.watch(prefix + "a", range_end=prefix + "c", no_delete=True)
    client.put(prefix + "a", "1")
    client.delete(prefix + "a")
    client.put(prefix + "c", "outside")
    client.put(prefix + "b", "2")
    got = [next(w), next(w)]
    w.cancel()
    assert [(e.type, e.value) for e in got] == [("put", b"1"), ("put", b"2")]


def test_cancel_from_another_thread_ends_blocked_iteration(client: kvclient.Client, prefix: str) -> None:
    w = client.watch(prefix + "idle")
    seen: List[kvclient.Event] = []
    t = threading.Thread(target=lambda: seen.extend(w))
    t.start()
    w.cancel()
    t.join(timeout=10)
    assert not t.is_alive()
    assert seen == []


def test_compacted_start_revision_raises(client: kvclient.Client, prefix: str) -> None:
    r1 = client.put(prefix + "c", "1").revision
    r2 = client.put(prefix + "c", "2").revision
    client.put(prefix + "c", "3")
    client.compact(r2)
    w = client.watch(prefix + "c", start_revision=r1)
    with pytest.raises(kvclient.CompactedError) as e:
        next(w)
    assert e.value.compact_revision == r2
    assert e.value.code == "compacted"
    assert list(w) == []  # the watch ended


def test_watch_resumes_across_kvd_restart_without_loss_or_repeat(fresh_kvd: Server) -> None:
    writer = kvclient.Client([fresh_kvd.endpoint])
    watcher = kvclient.Client([fresh_kvd.endpoint])
    w = watcher.watch_prefix("r/")
    revs: List[int] = []
    for i in range(20):
        revs.append(writer.put(f"r/{i}", str(i)).revision)
    got = [next(w) for _ in range(10)]
    fresh_kvd.restart()
    for i in range(20, 40):
        revs.append(writer.put(f"r/{i}", str(i)).revision)
    got += [next(w) for _ in range(30)]
    w.cancel()
    assert [e.revision for e in got] == revs
    assert [e.value for e in got] == [str(i).encode() for i in range(40)]
    writer.close()
    watcher.close()
