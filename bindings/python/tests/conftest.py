"""Fixtures: real kvd and etcd 3.4 processes on free 127.0.0.1 ports, in
temporary data dirs, killed at teardown. Nothing is mocked."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import kvclient

ROOT = Path(__file__).resolve().parents[3]
READY_TIMEOUT = 30.0


def kvd_bin() -> str:
    env = os.environ.get("KVD_BIN")
    if env:
        return env
    path = ROOT / "target" / "debug" / "kvd"
    if not path.exists():
        subprocess.run(["cargo", "build", "-p", "kvd", "--bin", "kvd"], cwd=ROOT, check=True)
    return str(path)


def etcd_bin() -> Optional[str]:
    return shutil.which("etcd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One kvd or etcd member (same flags for both)."""

    def __init__(
        self,
        kind: str,
        extra: Optional[List[str]] = None,
        scheme: str = "http",
        client_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.kind = kind
        self.client_kwargs = client_kwargs or {}
        self.extra = extra or []
        self.scheme = scheme
        self.dir = tempfile.mkdtemp(prefix=f"kvclient-{kind}-")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.client_port = free_port()
        self.peer_port = free_port()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.endpoint}"

    def start(self, probe: bool = True) -> None:
        binary = kvd_bin() if self.kind == "kvd" else etcd_bin()
        assert binary, f"no {self.kind} binary"
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [
                binary,
                "--name=n1",
                f"--data-dir={os.path.join(self.dir, 'data')}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=n1={peer}",
                *self.extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        if probe:
            self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last: Optional[BaseException] = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.proc.returncode}\n{self.log_tail()}")
            try:
                c = kvclient.Client([self.url], timeout=2.0, **self.client_kwargs)
                if c.status().leader != 0:
                    c.get("kvclient-probe")
                    c.close()
                    return
                c.close()
            except kvclient.KvError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} not ready: {last}\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill9()
        self.start()

    def stop(self) -> None:
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


def _start(kind: str) -> Server:
    if kind == "etcd" and etcd_bin() is None:
        pytest.skip("etcd is not installed")
    for _ in range(5):
        s = Server(kind)
        try:
            s.start()
            return s
        except RuntimeError as e:
            s.stop()
            if "in use" not in str(e):
                raise
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module", params=["kvd", "etcd"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server shared by a module's tests, once kvd and once etcd 3.4."""
    s = _start(request.param)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kvd() -> Iterator[Server]:
    """A kvd shared by a module's tests."""
    s = _start("kvd")
    yield s
    s.stop()


@pytest.fixture
def fresh_kvd() -> Iterator[Server]:
    """A kvd of the test's own (for restarts)."""
    s = _start("kvd")
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[kvclient.Client]:
    with kvclient.Client([server.endpoint]) as c:
        yield c


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so tests sharing a server do not meet."""
    return f"t/{uuid.uuid4().hex[:12]}/"
