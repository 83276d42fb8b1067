"""Summarizes bench.py's JSON lines (stdin) as a markdown table: for each
client and workload the best round by ops/s (with its CPU per op), and
kvclient's ratio to the best other client on that workload.

    python3 summarize.py --title "..." < results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, Tuple

WORKLOADS = ["put_seq", "get_seq", "put_c64", "get_c64", "watch"]
OTHERS = ["python-etcd3", "aetcd"]
GOAL = 1.5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", default="")
    a = ap.parse_args()
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


if __name__ == "__main__":
    main()
