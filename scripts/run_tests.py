#!/usr/bin/env python3
"""Runs the workspace's test targets in parallel lanes (scripts/test.sh calls it).

`cargo test --workspace` runs one test binary after another, and most of
ours spend their time waiting on real kvd/etcd processes (elections, lease
expiry, kill -9 and restart), not on the CPU. This builds every test target
once, then runs the targets in KV_TEST_JOBS lanes (default 2), longest
first, each as `cargo test --workspace --test NAME` (`--workspace` keeps the
feature set of the build, so nothing is rebuilt). Each target's output goes
to target/test-logs/NAME.log; a failed target's log is printed whole at the
end, and the exit status is 1 if any failed. Runs every target even after a
failure, so one CI run names every broken test.

Usage: scripts/run_tests.py [extra args for `cargo test`, e.g. --release]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Seconds each slow target took in CI (2 cores); targets not named here are
# taken as short. Only the order depends on it: longest first keeps the
# lanes even.
KNOWN_SECONDS = {
    "campaign": 161,
    "suite": 180,
    "check_perf": 63,
    "snapshot_install_memory": 59,
    "compaction_background": 44,
    "frozen_member": 45,
    "apply_lag": 39,
    "health_catchup": 39,
    "hardening_more": 35,
    "peer_hardening": 34,
    "auth_commands": 34,
    "tls": 32,
    "make_mirror": 30,
    "snapshot_restore": 26,
}


def test_targets(extra: list[str]) -> list[tuple[str, str]]:
    """Builds every test target; returns (kind flag, name) pairs to run."""
    cmd = ["cargo", "test", "--workspace", "--all-targets", "--no-run",
           "--message-format=json-render-diagnostics", *extra]
    out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True).stdout
    jobs: set[tuple[str, str]] = set()
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg["profile"]["test"]:
            continue
        kind = msg["target"]["kind"][0]
        name = msg["target"]["name"]
        if kind in ("lib", "rlib", "cdylib", "dylib", "staticlib", "proc-macro"):
            jobs.add(("--lib", ""))
        elif kind == "bin":
            jobs.add(("--bins", ""))
        elif kind in ("test", "bench", "example"):
            jobs.add((f"--{kind}", name))
        else:
            raise SystemExit(f"run_tests.py: unknown target kind {kind} ({name})")
    return sorted(jobs, key=lambda j: -KNOWN_SECONDS.get(j[1], 5))


def main() -> int:
    extra = sys.argv[1:]
    lanes = max(1, int(os.environ.get("KV_TEST_JOBS", "2")))
    jobs = test_targets(extra)
    logs = ROOT / "target" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(jobs)
    lock = threading.Lock()
    failed: list[tuple[str, Path]] = []
    took: list[tuple[float, str]] = []
    start = time.monotonic()

    def lane() -> None:
        while True:
            with lock:
                if not pending:
                    return
                flag, name = pending.pop(0)
            label = f"{flag} {name}".strip()
            log = logs / f"{(name or flag.lstrip('-'))}{'.' + flag.lstrip('-') if name else ''}.log"
            t0 = time.monotonic()
            with open(log, "w") as f:
                cmd = ["cargo", "test", "--workspace", flag, *([name] if name else []), *extra]
                rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
            dt = time.monotonic() - t0
            results = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
                       if ln.startswith("test result:")]
            with lock:
                took.append((dt, label))
                status = "ok" if rc == 0 else "FAILED"
                print(f"[run_tests] {status:6} {label} ({dt:.0f} s) {' | '.join(results)}", flush=True)
                if rc != 0:
                    failed.append((label, log))

    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.monotonic() - start
    print(f"[run_tests] {len(jobs)} targets in {lanes} lanes: {total:.0f} s; slowest:")
    for dt, label in sorted(took, reverse=True)[:8]:
        print(f"[run_tests]   {dt:6.0f} s  {label}")
    for label, log in failed:
        print(f"\n===== {label}: {log} =====")
        print(log.read_text(errors="replace"))
    if failed:
        print(f"[run_tests] FAILED: {', '.join(label for label, _ in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
