"""Summarizes bench.py's JSON lines (stdin) as a markdown table: for each
client and workload the best round by ops/s (with its CPU per op), and
kvclient's ratio to the best other client on that workload.

    python3 summarize.py --title "..." < results.jsonl

With --ab (ab.sh's lines, clients kvclient-old and kvclient-new): per
workload, each side's best ops/s and median CPU per op, and new/old.
"""

from __future__ import annotations

import argparse
import json
import sys
import statistics
from typing import Dict, List, Tuple

WORKLOADS = ["put_seq", "get_seq", "put_c64", "get_c64", "watch"]
OTHERS = ["python-etcd3", "aetcd"]
GOAL = 1.5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", default="")
    ap.add_argument("--ab", action="store_true")
    a = ap.parse_args()
    if a.ab:
        ab(a.title)
        return
    best: Dict[Tuple[str, str], dict] = {}
    loads = []
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        loads.append(r.get("load", 0.0))
        k = (r["client"], r["workload"])
        if k not in best or r["ops_per_s"] > best[k]["ops_per_s"]:
            best[k] = r

    def cell(client: str, w: str) -> str:
        r = best.get((client, w))
        return "n/a" if r is None else f"{r['ops_per_s']:.0f} ({r['cpu_us_per_op']})"

    print(a.title)
    if loads:
        print(f"1-minute load average during the run: {min(loads):.2f} to {max(loads):.2f}")
    print()
    print("| workload | kvclient ops/s (CPU µs/op) | python-etcd3 | aetcd | kvclient / best other | 1.5x met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for w in WORKLOADS:
        mine = best.get(("kvclient", w))
        other = max((best[(c, w)]["ops_per_s"] for c in OTHERS if (c, w) in best), default=None)
        if mine is None or not other:
            ratio, met = "n/a", "n/a"
        else:
            x = mine["ops_per_s"] / other
            ratio, met = f"{x:.2f}x", "yes" if x >= GOAL else "no"
        name = "watch events/s" if w == "watch" else w
        print(f"| {name} | {cell('kvclient', w)} | {cell('python-etcd3', w)} | {cell('aetcd', w)} | {ratio} | {met} |")


def ab(title: str) -> None:
    rows: Dict[Tuple[str, str], List[dict]] = {}
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault((r["client"], r["workload"]), []).append(r)
    loads = [r["load"] for rs in rows.values() for r in rs]
    print(title)
    if loads:
        print(f"1-minute load average during the run: {min(loads):.2f} to {max(loads):.2f}")
    print()
    print("| workload | old: best ops/s, median CPU µs/op | new: best ops/s, median CPU µs/op | new/old ops/s | new/old CPU |")
    print("| --- | --- | --- | --- | --- |")
    for w in WORKLOADS:
        old, new = rows.get(("kvclient-old", w)), rows.get(("kvclient-new", w))
        if not old or not new:
            continue
        o_ops, n_ops = max(r["ops_per_s"] for r in old), max(r["ops_per_s"] for r in new)
        o_cpu = statistics.median(r["cpu_us_per_op"] for r in old)
        n_cpu = statistics.median(r["cpu_us_per_op"] for r in new)
        print(
            f"| {w} | {o_ops:.0f}, {o_cpu:.1f} | {n_ops:.0f}, {n_cpu:.1f} | {n_ops / o_ops:.2f}x | {n_cpu / o_cpu:.2f}x |"
        )


if __name__ == "__main__":
    main()
