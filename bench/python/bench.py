"""Python client benchmark: kvclient against python-etcd3 (grpcio) and
aetcd (asyncio), on one server. Prints one JSON line per measurement.

Workloads (each client, same server):
  put_seq / get_seq   sequential ops from one thread (or one task)
  put_c64 / get_c64   64 concurrent ops from asyncio (async clients only)
  watch               events/s delivered to Python: a watch replays N
                      pre-written events from a start revision
CPU per op is this process's CPU time (all threads) over the ops. Each
line also carries the round number and the machine's 1-minute load average
when the measurement ended.

Run it through bench/python/run.sh, which builds a release wheel, makes
the venvs (python-etcd3 0.12 needs protobuf 3.20, aetcd needs protobuf 4+,
so they cannot share one) and starts the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List

VALUE = b"x" * 128
ROUND = 0
# Workloads to run (--workloads) and the name kvclient reports under
# (--label, e.g. to tell two wheels apart in an A/B run).
WORKLOADS = {"put_seq", "get_seq", "put_c64", "get_c64", "watch"}
LABEL = "kvclient"


def report(client: str, workload: str, ops: int, wall: float, cpu: float) -> None:
    print(
        json.dumps(
            {
                "client": client,
                "workload": workload,
                "round": ROUND,
                "ops": ops,
                "ops_per_s": round(ops / wall, 1),
                "cpu_us_per_op": round(cpu / ops * 1e6, 1),
                "load": round(os.getloadavg()[0], 2),
            }
        ),
        flush=True,
    )


def measure(client: str, workload: str, ops: int, fn: Callable[[], None]) -> None:
    if workload not in WORKLOADS:
        return
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    report(client, workload, ops, time.perf_counter() - w0, time.process_time() - c0)


async def ameasure(client: str, workload: str, ops: int, fn: Callable[[], Awaitable[None]]) -> None:
    if workload not in WORKLOADS:
        return
    w0, c0 = time.perf_counter(), time.process_time()
    await fn()
    report(client, workload, ops, time.perf_counter() - w0, time.process_time() - c0)


def keys(n: int) -> List[str]:
    p = uuid.uuid4().hex[:8]
    return [f"bench/{p}/{i:08d}" for i in range(n)]


def bench_kvclient(endpoint: str, n: int, watch_n: int) -> None:
    import kvclient

    me = LABEL
    c = kvclient.Client([endpoint])
    ks = keys(n)
    measure(me, "put_seq", n, lambda: [c.put(k, VALUE) for k in ks] and None)
    measure(me, "get_seq", n, lambda: [c.get(k) for k in ks] and None)
    if "watch" in WORKLOADS:
        wk = keys(watch_n)
        prefix = wk[0].rsplit("/", 1)[0] + "/"
        first = c.put(wk[0], VALUE).revision
        for k in wk[1:]:
            c.put(k, VALUE)

        def watch() -> None:
            w = c.watch_prefix(prefix, start_revision=first)
            for i, _ in enumerate(w):
                if i + 1 == watch_n:
                    break
            w.cancel()

        measure(me, "watch", watch_n, watch)

    async def concurrent() -> None:
        ac = kvclient.AsyncClient([endpoint])
        ks2 = keys(n)
        sem = asyncio.Semaphore(64)

        async def put(k: str) -> None:
            async with sem:
                await ac.put(k, VALUE)

        async def get(k: str) -> None:
            async with sem:
                await ac.get(k)

        await ameasure(me, "put_c64", n, lambda: _gather([put(k) for k in ks2]))
        await ameasure(me, "get_c64", n, lambda: _gather([get(k) for k in ks2]))

    asyncio.run(concurrent())


async def _gather(cs: List[Awaitable[Any]]) -> None:
    await asyncio.gather(*cs)


def bench_etcd3(endpoint: str, n: int, watch_n: int) -> None:
    import etcd3  # type: ignore[import-not-found]

    host, port = endpoint.rsplit(":", 1)
    c = etcd3.client(host=host, port=int(port))
    ks = keys(n)
    measure("python-etcd3", "put_seq", n, lambda: [c.put(k, VALUE) for k in ks] and None)
    measure("python-etcd3", "get_seq", n, lambda: [c.get(k) for k in ks] and None)
    if "watch" not in WORKLOADS:
        return
    wk = keys(watch_n)
    prefix = wk[0].rsplit("/", 1)[0] + "/"
    first = c.put(wk[0], VALUE).header.revision
    for k in wk[1:]:
        c.put(k, VALUE)

    def watch() -> None:
        events, cancel = c.watch_prefix(prefix, start_revision=first)
        for i, _ in enumerate(events):
            if i + 1 == watch_n:
                break
        cancel()

    measure("python-etcd3", "watch", watch_n, watch)


def bench_aetcd(endpoint: str, n: int, watch_n: int) -> None:
    import aetcd  # type: ignore[import-not-found]

    host, port = endpoint.rsplit(":", 1)

    async def main() -> None:
        c = aetcd.Client(host=host, port=int(port))
        ks = [k.encode() for k in keys(n)]

        async def seq_put() -> None:
            for k in ks:
                await c.put(k, VALUE)

        async def seq_get() -> None:
            for k in ks:
                await c.get(k)

        await ameasure("aetcd", "put_seq", n, seq_put)
        await ameasure("aetcd", "get_seq", n, seq_get)
        ks2 = [k.encode() for k in keys(n)]
        sem = asyncio.Semaphore(64)

        async def put(k: bytes) -> None:
            async with sem:
                await c.put(k, VALUE)

        async def get(k: bytes) -> None:
            async with sem:
                await c.get(k)

        await ameasure("aetcd", "put_c64", n, lambda: _gather([put(k) for k in ks2]))
        await ameasure("aetcd", "get_c64", n, lambda: _gather([get(k) for k in ks2]))
        if "watch" in WORKLOADS:
            wk = [k.encode() for k in keys(watch_n)]
            prefix = wk[0].rsplit(b"/", 1)[0] + b"/"
            first = (await c.put(wk[0], VALUE)).header.revision
            for k in wk[1:]:
                await c.put(k, VALUE)

            async def watch() -> None:
                w = await c.watch_prefix(prefix, start_revision=first)
                i = 0
                async for _ in w:
                    i += 1
                    if i == watch_n:
                        break
                await w.cancel()

            await ameasure("aetcd", "watch", watch_n, watch)
        await c.close()

    asyncio.run(main())


BENCHES: Dict[str, Callable[[str, int, int], None]] = {
    "kvclient": bench_kvclient,
    "etcd3": bench_etcd3,
    "aetcd": bench_aetcd,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--clients", default="kvclient")
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--watch-events", type=int, default=20000)
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--workloads", default="put_seq,get_seq,put_c64,get_c64,watch")
    ap.add_argument("--label", default="kvclient")
    a = ap.parse_args()
    global ROUND, WORKLOADS, LABEL
    ROUND = a.round
    WORKLOADS = set(a.workloads.split(","))
    LABEL = a.label
    for name in a.clients.split(","):
        BENCHES[name](a.endpoint, a.ops, a.watch_events)


if __name__ == "__main__":
    main()
