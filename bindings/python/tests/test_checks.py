"""Health checks, tags and filtered subscriptions, on a real kvd: HTTP
checks against a real http.server the test starts and stops (HTTPS ones
against the same server over Python's ssl, with a CA and certificate the
openssl CLI makes, as test_auth_tls makes them), TCP checks against a real listening socket, TTL checks
pinged from Python and left to expire. Waits are on events, never on
sleeps."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import kvclient
from conftest import Server
from test_auth_tls import make_pki

# Fast probes keep the tests short; nothing asserts how long a change took.
FAST = 0.1  # seconds between probes


class HealthServer:
    """A real HTTP server answering GET with a status the test sets; it can
    be stopped and started again on the same port. With `tls` it serves
    HTTPS and records the server names (SNI) clients sent."""

    def __init__(self, tls: Optional[ssl.SSLContext] = None) -> None:
        self.status = 200
        self.port = 0
        self.tls = tls
        self.sni: List[str] = []
        self.httpd: Optional[http.server.ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None
        if tls is not None:
            def record(_sock: object, name: Optional[str], _ctx: ssl.SSLContext) -> None:
                if name is not None:
                    self.sni.append(name)

            tls.sni_callback = record

    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}/health"

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = f"status {owner.status}".encode()
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        if self.tls is not None:
            # The handshake runs in accept(); a client refusing the
            # certificate fails it there, which the server shrugs off.
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            assert self.thread is not None
            self.thread.join()
            self.httpd = None


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    s = HealthServer()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def service(prefix: str) -> str:
    return "chk" + prefix.replace("/", "")[-10:]


def wait_for(sub: kvclient.Subscription, kind: str, id: str, health: Optional[str] = None) -> kvclient.ServiceEvent:
    """The next event of `kind` (`"a|b"`: either) for instance `id` (with
    `health`, if given); other events are skipped. pytest-timeout bounds
    the wait."""
    for ev in sub:
        if ev.type in kind.split("|") and ev.instance.id == id and (health is None or ev.instance.health == health):
            return ev
    raise AssertionError(f"subscription ended before {kind} {id}")


def ids(instances: List[kvclient.ServiceInstance]) -> List[str]:
    return sorted(i.id for i in instances)


def test_http_check_critical_then_passing_through_filtered_subscriptions(
    kvd: Server, service: str, health_server: HealthServer
) -> None:
    c = kvclient.Client([kvd.endpoint])
    passing = c.subscribe(service, health="passing")
    warning = c.subscribe(service, health="warning")
    every = c.subscribe(service)
    check = kvclient.HttpCheck(health_server.url, interval=FAST, timeout=1.0)
    with c.register(service, "127.0.0.1:1", id="web-1", checks=[check]) as reg:
        # Checks start critical (as Consul's), so the passing view sees it
        # only once the first probe passed.
        ev = wait_for(passing, "added", "web-1")
        assert ev.instance.health == "passing"
        assert ev.instance.checks["http"].health == "passing"
        assert "status 200" in ev.instance.checks["http"].output
        assert wait_for(warning, "added", "web-1", "passing")
        assert reg.checks["http"].health == "passing"

        health_server.status = 429  # Consul: 429 Too Many Requests is warning
        wait_for(passing, "removed", "web-1")
        ev = wait_for(warning, "updated", "web-1", "warning")
        assert ev.instance.checks["http"].health == "warning"
        assert ids(c.instances(service, health="passing")) == []
        assert ids(c.instances(service, health="warning")) == ["web-1"]

        health_server.stop()  # no answer at all: critical
        wait_for(warning, "removed", "web-1")
        # A subscription reports what is there when first read as "added".
        ev = wait_for(every, "added|updated", "web-1", "critical")
        assert ev.instance.checks["http"].health == "critical"
        assert ids(c.instances(service, health="warning")) == []
        assert [i.health for i in c.instances(service)] == ["critical"]  # the default is "any"
        now = reg.checks["http"]  # (a fresh read: mypy narrows repeated property reads)
        assert now.health == "critical"
        assert reg.instance is not None and reg.instance.health == "critical"

        health_server.status = 200
        health_server.start()  # the same port again
        ev = wait_for(passing, "added", "web-1")
        assert ev.instance.checks["http"].health == "passing"
        wait_for(warning, "added", "web-1")
    wait_for(every, "removed", "web-1")
    for s in (passing, warning, every):
        s.close()


def test_tcp_check_follows_a_listening_socket(kvd: Server, service: str) -> None:
    c = kvclient.Client([kvd.endpoint])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    addr = "127.0.0.1:%d" % listener.getsockname()[1]
    passing = c.subscribe(service, health="passing")
    try:
        reg = c.register(service, addr, id="db-1", checks=[kvclient.TcpCheck(addr, interval=FAST, timeout=1.0)])
        ev = wait_for(passing, "added", "db-1")
        assert ev.instance.checks["tcp"].health == "passing"
    finally:
        listener.close()  # connections are now refused
    wait_for(passing, "removed", "db-1")
    assert reg.checks["tcp"].health == "critical"
    reg.close()
    passing.close()


def test_ttl_check_pinged_from_python_then_left_to_expire(kvd: Server, service: str) -> None:
    c = kvclient.Client([kvd.endpoint])
    passing = c.subscribe(service, health="passing")
    warning = c.subscribe(service, health="warning")
    reg = c.register(service, "10.0.0.9:0", id="worker", checks=[kvclient.TtlCheck(1.0, name="beat")])
    assert reg.checks["beat"].health == "critical"  # until the first report
    assert passing.current() == []

    reg.pass_ttl("beat", note="queue drained")
    ev = wait_for(passing, "added", "worker")
    assert (ev.instance.checks["beat"].health, ev.instance.checks["beat"].output) == ("passing", "queue drained")

    reg.warn_ttl("beat", note="backing up")
    wait_for(passing, "removed", "worker")
    ev = wait_for(warning, "added|updated", "worker", "warning")
    assert ev.instance.checks["beat"].output == "backing up"

    # No more reports: after its TTL the check turns critical by itself.
    ev = wait_for(warning, "removed", "worker")
    entry = c.instances(service)
    assert [i.health for i in entry] == ["critical"]
    assert "TTL expired" in entry[0].checks["beat"].output
    assert reg.checks["beat"].health == "critical"

    reg.pass_ttl("beat")
    wait_for(passing, "added", "worker")
    reg.fail_ttl("beat", note="database unreachable")
    wait_for(passing, "removed", "worker")

    with pytest.raises(kvclient.InvalidArgumentError, match="no TTL check named"):
        reg.pass_ttl("nope")
    reg.close()
    assert reg.stopped and reg.instance is None and reg.checks == {}
    with pytest.raises(kvclient.ClosedError):
        reg.pass_ttl("beat")
    passing.close()
    warning.close()


def test_deregister_critical_after_stops_the_registration(kvd: Server, service: str) -> None:
    c = kvclient.Client([kvd.endpoint])
    every = c.subscribe(service)
    # A port nothing listens on: the check never passes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % s.getsockname()[1]
    check = kvclient.TcpCheck(dead, deregister_critical_after=0.5, interval=FAST, timeout=1.0)
    reg = c.register(service, dead, id="doomed", checks=[check])
    wait_for(every, "added", "doomed", "critical")
    wait_for(every, "removed", "doomed")
    assert c.instances(service) == []
    for _ in reg:  # iteration ends once the registration stopped
        pass
    assert reg.stopped and reg.instance is None
    reg.close()  # closing a stopped registration is fine
    every.close()


def test_tags_and_metadata_filter_listings_and_subscriptions(kvd: Server, service: str) -> None:
    c = kvclient.Client([kvd.endpoint])
    v2 = c.subscribe(service, tags=["v2"])
    a = c.register(service, "10.0.0.1:80", id="a", tags=["v1"], metadata={"zone": "eu"})
    b = c.register(service, "10.0.0.2:80", id="b", tags=("v1", "v2"), metadata={"zone": "us"})
    n = c.register(service, "10.0.0.3:80", id="n")
    assert wait_for(v2, "added", "b").instance.tags == ["v1", "v2"]
    assert ids(c.instances(service)) == ["a", "b", "n"]
    assert ids(c.instances(service, tags=["v1"])) == ["a", "b"]
    assert ids(c.instances(service, tags=["v1", "v2"])) == ["b"]
    assert ids(c.instances(service, tags=["v3"])) == []
    assert ids(c.instances(service, metadata={"zone": "eu"})) == ["a"]
    assert ids(c.instances(service, tags=["v1"], metadata={"zone": "us"})) == ["b"]
    assert ids(v2.current()) == ["b"]
    with c.subscribe(service, tags=["v1"], metadata={"zone": "eu"}) as eu:
        assert ids(eu.current()) == ["a"]
    b.close()
    wait_for(v2, "removed", "b")
    assert v2.current() == []
    with pytest.raises(kvclient.InvalidArgumentError, match="health must be"):
        c.instances(service, health="critical")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.instances(service, tags="v1")  # a str is not a list of tags
    for r in (a, n):
        r.close()
    v2.close()


def test_check_objects_validate_and_name_themselves(kvd: Server, service: str, health_server: HealthServer) -> None:
    h = kvclient.HttpCheck(health_server.url, interval=2.5, timeout=0.5, failures_before_critical=3)
    assert (h.kind, h.name, h.url, h.interval, h.timeout) == ("http", None, health_server.url, 2.5, 0.5)
    assert (h.success_before_passing, h.failures_before_critical, h.deregister_critical_after) == (1, 3, None)
    assert isinstance(h, kvclient.Check)
    g = kvclient.GrpcCheck("127.0.0.1:50051", service="my.Svc", name="rpc")
    assert (g.kind, g.name, g.service) == ("grpc", "rpc", "my.Svc")
    cmd = kvclient.CommandCheck(["true"], deregister_critical_after=60.0)
    assert (cmd.kind, cmd.argv, cmd.deregister_critical_after) == ("cmd", ["true"], 60.0)
    assert kvclient.TtlCheck(30.0).ttl == 30.0
    bad: List[Callable[[], object]] = [
        lambda: kvclient.HttpCheck("ftp://x/"),
        lambda: kvclient.HttpCheck("not a url"),
        lambda: kvclient.HttpCheck(health_server.url, interval=0),
        lambda: kvclient.HttpCheck(health_server.url, timeout=float("nan")),
        lambda: kvclient.HttpCheck(health_server.url, failures_before_critical=0),
        lambda: kvclient.TcpCheck(""),
        lambda: kvclient.GrpcCheck("noport"),
        lambda: kvclient.GrpcCheck("h:1/svc"),
        lambda: kvclient.CommandCheck([]),
        lambda: kvclient.TtlCheck(-1.0),
        lambda: kvclient.TtlCheck(5.0, name=""),
    ]
    for make in bad:
        with pytest.raises(kvclient.InvalidArgumentError):
            make()

    c = kvclient.Client([kvd.endpoint])
    # Unnamed checks are named after their kind, as kvctl names them.
    checks = [
        kvclient.HttpCheck(health_server.url, interval=FAST, timeout=1.0),
        kvclient.CommandCheck(["true"], interval=FAST, timeout=1.0),
        kvclient.HttpCheck(health_server.url, interval=FAST, timeout=1.0),
        kvclient.TtlCheck(30.0, name="beat"),
    ]
    with c.register(service, "127.0.0.1:1", id="multi", checks=checks) as reg:
        assert sorted(reg.checks) == ["beat", "cmd", "http", "http-2"]
        assert reg.instance is not None and reg.instance.health == "critical"
    with pytest.raises(kvclient.InvalidArgumentError, match="unique"):
        c.register(service, "127.0.0.1:1", checks=[kvclient.TtlCheck(1.0, name="x"), kvclient.TtlCheck(2.0, name="x")])
    with pytest.raises(TypeError):
        c.register(service, "127.0.0.1:1", checks=["http://127.0.0.1/"])  # type: ignore[list-item]


def test_async_http_check_through_a_filtered_subscription(
    kvd: Server, service: str, health_server: HealthServer
) -> None:
    async def next_event(sub: kvclient.AsyncSubscription, kind: str, id: str) -> kvclient.ServiceEvent:
        async for ev in sub:
            if ev.type == kind and ev.instance.id == id:
                return ev
        raise AssertionError(f"subscription ended before {kind} {id}")

    async def main() -> None:
        async with kvclient.AsyncClient([kvd.endpoint]) as c:
            passing = await c.subscribe(service, health="passing", tags=["edge"])
            checks = [kvclient.HttpCheck(health_server.url, interval=FAST, timeout=1.0), kvclient.TtlCheck(30.0, name="beat")]
            async with await c.register(service, "127.0.0.1:1", id="a1", tags=["edge"], checks=checks) as reg:
                await reg.pass_ttl("beat", note="ready")  # both checks passing: passing
                ev = await next_event(passing, "added", "a1")
                assert ev.instance.tags == ["edge"]
                assert {n: s.health for n, s in ev.instance.checks.items()} == {"beat": "passing", "http": "passing"}
                health_server.status = 500
                await next_event(passing, "removed", "a1")
                assert [i.id for i in await c.instances(service, health="passing")] == []
                assert reg.checks["http"].health == "critical"
                health_server.status = 200
                await next_event(passing, "added", "a1")
                await reg.fail_ttl("beat")
                await next_event(passing, "removed", "a1")
            assert reg.stopped
            passing.close()

    asyncio.run(main())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate it signed for 127.0.0.1 and localhost:
    ca.pem, server.pem, server.key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("check-pki")
    make_pki(d)
    return d


@pytest.fixture
def https_server(pki: Path) -> Iterator[HealthServer]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    s = HealthServer(tls=ctx)
    s.start()
    yield s
    s.stop()


def test_https_checks_verify_the_server_as_told(
    kvd: Server, service: str, https_server: HealthServer, pki: Path
) -> None:
    c = kvclient.Client([kvd.endpoint])
    ca = str(pki / "ca.pem")

    def check(name: str, **tls: Any) -> kvclient.HttpCheck:
        return kvclient.HttpCheck(https_server.url, name=name, interval=FAST, timeout=2.0, **tls)

    checks = [
        check("ca", tls_ca_file=ca),
        # The system's roots do not know the test's CA.
        check("system-roots"),
        check("skip", tls_skip_verify=True),
        # The name given is verified instead of the URL's host (for which
        # the certificate is valid too): the wrong name fails.
        check("named", tls_ca_file=pki / "ca.pem", tls_server_name="localhost"),
        check("misnamed", tls_ca_file=ca, tls_server_name="db.internal"),
    ]
    want = {"ca": "passing", "system-roots": "critical", "skip": "passing", "named": "passing", "misnamed": "critical"}
    every = c.subscribe(service)
    with c.register(service, "127.0.0.1:1", id="tls-1", checks=checks):
        states: Dict[str, kvclient.CheckState] = {}
        for ev in every:  # until every check has reported (pytest-timeout bounds it)
            if ev.instance.id == "tls-1":
                states = ev.instance.checks
                if all(s.output != "not run yet" for s in states.values()):
                    break
        assert {n: s.health for n, s in states.items()} == want, {n: s.output for n, s in states.items()}
        assert "status 200" in states["ca"].output
        assert "status 200" in states["named"].output
        assert "status 200" in states["skip"].output
        assert "TLS handshake failed" in states["system-roots"].output
        assert "UnknownIssuer" in states["system-roots"].output
        assert "TLS handshake failed" in states["misnamed"].output
        assert "db.internal" in states["misnamed"].output
        # The name given is also the SNI; an IP address host sends none.
        assert set(https_server.sni) == {"localhost", "db.internal"}
    every.close()


def test_tls_settings_are_validated(pki: Path, health_server: HealthServer) -> None:
    h = kvclient.HttpCheck("https://127.0.0.1:8443/health")
    assert (h.tls_ca_file, h.tls_server_name, h.tls_skip_verify) == (None, None, False)
    ca = pki / "ca.pem"
    g = kvclient.GrpcCheck("https://127.0.0.1:50051", service="my.Svc", tls_ca_file=ca, tls_server_name="rpc.internal")
    assert (g.tls_ca_file, g.tls_server_name, g.tls_skip_verify) == (str(ca), "rpc.internal", False)
    assert kvclient.HttpCheck("https://[::1]:8443/", tls_skip_verify=True).tls_skip_verify
    bad: List[Tuple[Callable[[], object], str]] = [
        # TLS settings without an https:// target to use them.
        (lambda: kvclient.HttpCheck(health_server.url, tls_skip_verify=True), "need an https://"),
        (lambda: kvclient.GrpcCheck("127.0.0.1:50051", tls_ca_file=ca), "need an https://"),
        (lambda: kvclient.HttpCheck("https://h/", tls_ca_file=pki / "missing.pem"), "invalid check-tls-ca-file"),
        # A file without a certificate in it is no CA.
        (lambda: kvclient.HttpCheck("https://h/", tls_ca_file=pki / "server.ext"), "invalid check-tls-ca-file"),
        (lambda: kvclient.HttpCheck("https://h/", tls_server_name="not a name"), "invalid check-tls-server-name"),
    ]
    for make, message in bad:
        with pytest.raises(kvclient.InvalidArgumentError, match=message):
            make()
    with pytest.raises(TypeError):
        kvclient.TcpCheck("127.0.0.1:1", tls_skip_verify=True)  # type: ignore[call-arg]
