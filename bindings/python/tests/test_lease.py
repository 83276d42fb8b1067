"""Leases, sync API: grant, keys, time-to-live, revoke, keeper, lost signal."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

import kvclient


def test_grant_attach_ttl_revoke(client: kvclient.Client, prefix: str) -> None:
    lease = client.lease(30)
    assert lease.id > 0 and lease.ttl == 30
    client.put(prefix + "l", "v", lease=lease)
    client.put(prefix + "m", "v", lease=lease.id)
    kv = client.get(prefix + "l")
    assert kv is not None and kv.lease == lease.id
    info = lease.time_to_live(keys=True)
    assert 0 < info.ttl <= 30 and info.granted_ttl == 30
    assert sorted(info.keys) == [(prefix + "l").encode(), (prefix + "m").encode()]
    assert lease.id in client.leases()
    lease.revoke()
    assert client.get(prefix + "l") is None
    assert lease.time_to_live().ttl == -1
    with pytest.raises(kvclient.LeaseNotFoundError) as e:
        client.put(prefix + "n", "v", lease=lease)
    assert e.value.code == "lease_not_found"


def test_keeper_outlives_ttl_and_stop(client: kvclient.Client, prefix: str) -> None:
    lease = client.lease(2)
    client.put(prefix + "kept", "v", lease=lease)
    with lease.keep_alive() as keeper:
        assert keeper.id == lease.id and keeper.ttl > 0
        # Waiting past the TTL: the key must still be there.
        assert keeper.wait_lost(timeout=3.5) is None
        assert keeper.lost is None
        assert client.get(prefix + "kept") is not None
    assert keeper.lost == "stopped"
    lease.revoke()


def test_lost_signal_when_revoked_elsewhere(client: kvclient.Client) -> None:
    lease = client.lease(5)
    keeper = lease.keep_alive()
    called: List[str] = []
    done = threading.Event()

    def on_lost(reason: str) -> None:
        called.append(reason)
        done.set()

    keeper.on_lost(on_lost)
    client.revoke_lease(lease.id)
    assert keeper.wait_lost(timeout=float("inf")) == "not_found"  # inf: no limit
    assert done.wait(10)
    assert called == ["not_found"]
    assert keeper.lost == "not_found"


def test_lease_as_with_block_keeps_and_revokes(client: kvclient.Client, prefix: str) -> None:
    with client.lease(2) as lease:
        client.put(prefix + "w", "v", lease=lease)
        time.sleep(3)  # past the TTL: kept alive inside the block
        assert client.get(prefix + "w") is not None
    assert client.get(prefix + "w") is None  # revoked on exit


def test_keeper_of_unknown_lease_fails(client: kvclient.Client) -> None:
    lease = client.lease(5)
    lease.revoke()
    with pytest.raises(kvclient.LeaseNotFoundError):
        lease.keep_alive()
