"""Drives a server with PyPI's `etcd3` package (a client we did not write).

Usage: python_etcd3.py HOST PORT. Exits non-zero with a message on the first
mismatch. Run by server/tests/compat.rs against kvd and against etcd.
"""
import sys
import threading

import etcd3

host, port = sys.argv[1], int(sys.argv[2])
c = etcd3.client(host=host, port=port, timeout=10)


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)


c.put("/py/a", "1")
c.put("/py/b", "2")
value, meta = c.get("/py/a")
check(value == b"1", "get /py/a")
check(meta.version == 1, "version 1")
keys = sorted(m.key for _, m in c.get_prefix("/py/"))
check(keys == [b"/py/a", b"/py/b"], "get_prefix")

ok, _ = c.transaction(
    compare=[c.transactions.value("/py/a") == "1"],
    success=[c.transactions.put("/py/a", "10")],
    failure=[],
)
check(ok, "txn succeeded")
check(c.get("/py/a")[0] == b"10", "txn put applied")
ok, _ = c.transaction(
    compare=[c.transactions.version("/py/a") == 7],
    success=[],
    failure=[c.transactions.put("/py/c", "3")],
)
check(not ok and c.get("/py/c")[0] == b"3", "txn failure branch")

events = []
done = threading.Event()


def on_watch(resp):
    for e in resp.events:
        events.append((type(e).__name__, e.key, e.value))
        if e.key == b"/py/w2":
            done.set()


wid = c.add_watch_prefix_callback("/py/w", on_watch)
c.put("/py/w1", "x")
c.put("/py/w2", "y")
check(done.wait(10), "watch delivered events")
c.cancel_watch(wid)
check([k for _, k, _ in events] == [b"/py/w1", b"/py/w2"], "watch order: %r" % events)

lease = c.lease(60)
c.put("/py/leased", "v", lease=lease)
check(lease.remaining_ttl > 0, "lease ttl")
check(c.get("/py/leased")[1].lease_id == lease.id, "key attached to lease")
lease.refresh()
lease.revoke()
check(c.get("/py/leased")[0] is None, "revoke deleted the key")

check(c.delete_prefix("/py/").deleted == 5, "delete_prefix count")
status = c.status()
check(status.db_size > 0, "status db size")
print("python etcd3: ok")
