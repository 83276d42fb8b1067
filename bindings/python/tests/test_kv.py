"""KV, transactions, maintenance and errors, sync API, on kvd and etcd."""

from __future__ import annotations

import pytest

import kvclient
from kvclient import Compare, Op


def test_put_get_bytes_and_text(client: kvclient.Client, prefix: str) -> None:
    r = client.put(prefix + "a", "héllo")
    assert r.revision > 0
    kv = client.get(prefix + "a")
    assert kv is not None
    assert kv.value == "héllo".encode()
    assert kv.text == "héllo"
    assert kv.key == (prefix + "a").encode()
    assert kv.key_text == prefix + "a"
    assert kv.version == 1
    assert kv.create_revision == kv.mod_revision == r.revision
    assert kv.lease == 0
    client.put((prefix + "b").encode(), b"\x00\xff")
    b = client.get((prefix + "b").encode())
    assert b is not None and b.value == b"\x00\xff"
    with pytest.raises(UnicodeDecodeError):
        _ = b.text
    assert client.get(prefix + "missing") is None


def test_put_prev_kv_and_versions(client: kvclient.Client, prefix: str) -> None:
    client.put(prefix + "k", "1")
    r = client.put(prefix + "k", "2", prev_kv=True)
    assert r.prev_kv is not None and r.prev_kv.value == b"1"
    kv = client.get(prefix + "k")
    assert kv is not None and kv.version == 2
    old = client.get(prefix + "k", revision=r.revision - 1)
    assert old is not None and old.value == b"1"


def test_get_prefix_range_and_options(client: kvclient.Client, prefix: str) -> None:
    for i in range(5):
        client.put(f"{prefix}{i}", f"v{i}")
    client.put(prefix[:-1] + "0", "outside")  # shares the prefix minus '/'
    r = client.get_prefix(prefix)
    assert [kv.text for kv in r] == [f"v{i}" for i in range(5)]
    assert len(r) == 5 and r.count == 5 and not r.more
    assert r[0].text == "v0" and r[-1].text == "v4"
    lim = client.get_prefix(prefix, limit=2)
    assert len(lim) == 2 and lim.more and lim.count == 5
    desc = client.get_prefix(prefix, sort_order="descend", sort_target="key")
    assert [kv.text for kv in desc][0] == "v4"
    keys = client.get_prefix(prefix, keys_only=True)
    assert all(kv.value == b"" for kv in keys)
    cnt = client.get_prefix(prefix, count_only=True)
    assert cnt.count == 5 and len(cnt) == 0
    rng = client.get_range(prefix + "1", prefix + "3")
    assert [kv.text for kv in rng] == ["v1", "v2"]
    with pytest.raises(kvclient.InvalidArgumentError):
        client.get_prefix(prefix, sort_order="sideways")


def test_delete_and_delete_prefix(client: kvclient.Client, prefix: str) -> None:
    for i in range(3):
        client.put(f"{prefix}{i}", "x")
    d = client.delete(prefix + "0", prev_kv=True)
    assert d and d.deleted == 1 and d.prev_kvs[0].key == (prefix + "0").encode()
    assert not client.delete(prefix + "0")
    d = client.delete_prefix(prefix)
    assert d.deleted == 2
    assert len(client.get_prefix(prefix)) == 0
    client.put(prefix + "a", "1")
    client.put(prefix + "b", "1")
    assert client.delete_range(prefix + "a", prefix + "b").deleted == 1


def test_transaction_compare_and_ops(client: kvclient.Client, prefix: str) -> None:
    k = prefix + "txn"
    # Create-if-absent.
    r = client.transaction(
        compare=[Compare.version(k) == 0],
        success=[Op.put(k, "first")],
        failure=[Op.get(k)],
    )
    assert r.succeeded and r and isinstance(r.responses[0], kvclient.PutResult)
    r = client.transaction(
        compare=[Compare.version(k) == 0],
        success=[Op.put(k, "second")],
        failure=[Op.get(k)],
    )
    assert not r.succeeded
    got = r.responses[0]
    assert isinstance(got, kvclient.GetResult) and got[0].text == "first"
    # Value, mod revision, create revision and lease compares.
    kv = client.get(k)
    assert kv is not None
    r = client.transaction(
        compare=[
            Compare.value(k) == "first",
            Compare.mod_revision(k) == kv.mod_revision,
            Compare.create_revision(k) < kv.create_revision + 1,
            Compare.lease(k) == 0,
            Compare.value(k) != "other",
            Compare.version(k) > 0,
        ],
        success=[Op.put(k, "third", prev_kv=True), Op.delete(prefix + "nothing"), Op.txn([], [Op.get(k)])],
    )
    assert r.succeeded
    put, dele, nested = r.responses
    assert isinstance(put, kvclient.PutResult) and put.prev_kv is not None and put.prev_kv.text == "first"
    assert isinstance(dele, kvclient.DeleteResult) and dele.deleted == 0
    assert isinstance(nested, kvclient.TxnResult) and nested.succeeded
    inner = nested.responses[0]
    assert isinstance(inner, kvclient.GetResult) and inner[0].text == "third"
    # Prefix compare: every key under the prefix.
    r = client.transaction(compare=[Compare.version(prefix, prefix=True) > 0], success=[])
    assert r.succeeded
    with pytest.raises(kvclient.InvalidArgumentError):
        _ = Compare.version(k) <= 1  # etcd has no <=


def test_duplicate_key_in_txn_is_invalid_argument(client: kvclient.Client, prefix: str) -> None:
    with pytest.raises(kvclient.InvalidArgumentError) as e:
        client.transaction(compare=[], success=[Op.put(prefix + "d", "1"), Op.put(prefix + "d", "2")])
    assert e.value.code == "duplicate_key"
    assert "duplicate key" in e.value.message
    assert isinstance(e.value, kvclient.KvError)


def test_compact_and_compacted_error(client: kvclient.Client, prefix: str) -> None:
    r1 = client.put(prefix + "c", "1")
    r2 = client.put(prefix + "c", "2")
    client.compact(r2.revision)
    with pytest.raises(kvclient.CompactedError) as e:
        client.get(prefix + "c", revision=r1.revision)
    assert e.value.code == "compacted"
    assert "compacted" in str(e.value)
    with pytest.raises(kvclient.FutureRevisionError) as f:
        client.get(prefix + "c", revision=r2.revision + 1_000_000)
    assert f.value.code == "future_rev"


def test_status_and_members(client: kvclient.Client) -> None:
    s = client.status()
    assert s.version and s.leader != 0 and s.revision > 0 and s.raft_term > 0
    ms = client.members()
    assert len(ms) == 1
    assert ms[0].name == "n1" and ms[0].client_urls and not ms[0].is_learner


def test_bad_arguments_are_type_errors(client: kvclient.Client) -> None:
    with pytest.raises(TypeError):
        client.put(1, "v")  # type: ignore[arg-type]
    with pytest.raises(kvclient.InvalidArgumentError):
        client.put("", "v")


def test_unreachable_server_is_connection_failed() -> None:
    from conftest import free_port

    c = kvclient.Client([f"127.0.0.1:{free_port()}"], timeout=2.0)
    with pytest.raises(kvclient.ConnectionFailedError) as e:
        c.get("k")
    assert e.value.code in ("unavailable", "transport")
    c.close()
    with pytest.raises(kvclient.ClosedError):
        c.get("k")


def test_bad_configuration() -> None:
    with pytest.raises(kvclient.InvalidArgumentError):
        kvclient.Client([])
    with pytest.raises(kvclient.InvalidArgumentError):
        kvclient.Client(["127.0.0.1:1"], user="root")
    with pytest.raises(kvclient.InvalidArgumentError):
        kvclient.Client(["127.0.0.1:1"], ca_cert="/nonexistent/ca.pem")
