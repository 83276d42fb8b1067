"""Auth (user/password, permissions, token renewal) and TLS (CA, client
certificates) against the server kinds in KVCLIENT_SECURE_KINDS (default:
etcd 3.4 and kvd). Both kinds are configured with etcd's flags and etcdctl;
certificates come from the openssl CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import kvclient
from conftest import Server, etcd_bin

pytestmark = pytest.mark.skipif(shutil.which("etcdctl") is None, reason="etcdctl not installed")

SECURE_KINDS = [k for k in os.environ.get("KVCLIENT_SECURE_KINDS", "etcd,kvd").split(",") if k]


def secure_server(kind: str, **kwargs: object) -> Server:
    if kind == "etcd" and etcd_bin() is None:
        pytest.skip("etcd is not installed")
    return Server(kind, **kwargs)  # type: ignore[arg-type]


def etcdctl(server: Server, *args: str, user: str = "") -> None:
    cmd = ["etcdctl", f"--endpoints={server.url}", *(["--user", user] if user else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module", params=SECURE_KINDS)
def auth_etcd(request: pytest.FixtureRequest) -> Iterator[Server]:
    # Tokens live 1 s, so the renewal test need not wait long.
    s = secure_server(request.param, extra=["--auth-token-ttl=1"])
    s.start()
    etcdctl(s, "user", "add", "root:rootpw")
    etcdctl(s, "role", "add", "reader")
    etcdctl(s, "role", "grant-permission", "reader", "read", "pub/", "--prefix=true")
    etcdctl(s, "role", "grant-permission", "reader", "readwrite", "app/", "--prefix=true")
    etcdctl(s, "user", "add", "alice:alicepw")
    etcdctl(s, "user", "grant-role", "alice", "reader")
    etcdctl(s, "auth", "enable")
    yield s
    s.stop()


def test_user_password_and_permissions(auth_etcd: Server) -> None:
    with kvclient.Client([auth_etcd.endpoint], user="root", password="rootpw") as root:
        root.put("pub/a", "1")
        kv = root.get("pub/a")
        assert kv is not None and kv.text == "1"
    with kvclient.Client([auth_etcd.endpoint], user="alice", password="alicepw") as alice:
        kv = alice.get("pub/a")
        assert kv is not None and kv.text == "1"
        with pytest.raises(kvclient.PermissionDeniedError) as e:
            alice.put("pub/a", "2")
        assert e.value.code == "permission_denied"
        w = alice.watch("pub/a")  # streams carry the token too
        w.cancel()


def test_wrong_password_and_no_credentials(auth_etcd: Server) -> None:
    with pytest.raises(kvclient.AuthFailedError) as e:
        kvclient.Client([auth_etcd.endpoint], user="root", password="wrong")
    assert e.value.code == "auth_failed"
    assert "authentication failed" in e.value.message
    anon = kvclient.Client([auth_etcd.endpoint])
    with pytest.raises(kvclient.KvError):
        anon.put("pub/a", "x")


def test_expired_token_is_renewed_transparently(auth_etcd: Server) -> None:
    with kvclient.Client([auth_etcd.endpoint], user="alice", password="alicepw") as alice:
        alice.put("app/renew", "1")
        time.sleep(3)  # the token (TTL 1 s) expires meanwhile
        alice.put("app/renew", "2")
        kv = alice.get("app/renew")
        assert kv is not None and kv.text == "2"
        time.sleep(3)
        with alice.watch("app/renew") as w:  # a new stream re-authenticates too
            alice.put("app/renew", "3")
            assert next(w).value == b"3"


def test_async_auth(auth_etcd: Server) -> None:
    import asyncio

    async def main() -> None:
        c = kvclient.AsyncClient([auth_etcd.endpoint], user="alice", password="alicepw")
        await c.connect()
        kv = await c.get("pub/a")
        assert kv is not None
        bad = kvclient.AsyncClient([auth_etcd.endpoint], user="alice", password="nope")
        with pytest.raises(kvclient.AuthFailedError):
            await bad.connect()

    asyncio.run(main())


def openssl(d: Path, args: str) -> None:
    subprocess.run(["openssl", *args.split()], cwd=d, check=True, capture_output=True)


EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"


def make_pki(d: Path) -> None:
    openssl(d, f"req -x509 {EC} -days 2 -subj /CN=kvclient-test-CA -keyout ca.key -out ca.pem "
               "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign")
    for name in ("server", "client"):
        (d / f"{name}.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        openssl(d, f"req {EC} -subj /CN={name} -keyout {name}.key -out {name}.csr")
        openssl(d, f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                   f"-extfile {name}.ext -out {name}.pem")


@pytest.fixture(scope="module", params=SECURE_KINDS)
def tls_etcd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")
    make_pki(d)
    kwargs = {"ca_cert": str(d / "ca.pem"), "cert_cert": str(d / "client.pem"), "cert_key": str(d / "client.key")}
    s = secure_server(
        request.param,
        extra=[
            f"--cert-file={d / 'server.pem'}",
            f"--key-file={d / 'server.key'}",
            f"--trusted-ca-file={d / 'ca.pem'}",
            "--client-cert-auth",
        ],
        scheme="https",
        client_kwargs=kwargs,
    )
    s.start()
    yield s, d
    s.stop()


def test_tls_with_client_certificate(tls_etcd: tuple[Server, Path]) -> None:
    s, d = tls_etcd
    with kvclient.Client(
        [s.url], ca_cert=str(d / "ca.pem"), cert_cert=str(d / "client.pem"), cert_key=str(d / "client.key")
    ) as c:
        c.put("tls/k", "v")
        kv = c.get("tls/k")
        assert kv is not None and kv.text == "v"
        with c.watch("tls/k") as w:
            c.put("tls/k", "w")
            assert next(w).value == b"w"


def test_tls_without_client_certificate_is_refused(tls_etcd: tuple[Server, Path]) -> None:
    s, d = tls_etcd
    c = kvclient.Client([s.url], ca_cert=str(d / "ca.pem"), timeout=3.0)
    with pytest.raises(kvclient.ConnectionFailedError):
        c.get("tls/k")


def test_tls_with_unknown_ca_is_refused(tls_etcd: tuple[Server, Path], tmp_path: Path) -> None:
    s, d = tls_etcd
    openssl(tmp_path, f"req -x509 {EC} -days 2 -subj /CN=other-CA -keyout o.key -out o.pem")
    c = kvclient.Client(
        [s.url], ca_cert=str(tmp_path / "o.pem"), cert_cert=str(d / "client.pem"),
        cert_key=str(d / "client.key"), timeout=3.0,
    )
    with pytest.raises(kvclient.ConnectionFailedError):
        c.get("tls/k")
