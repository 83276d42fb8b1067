#!/usr/bin/env bash
# Installs what builds and tests need on a fresh Debian machine: protoc (for the
# etcd-client crate used in tests), Debian's etcd 3.4 server and etcdctl (the
# reference the compatibility tests compare against), openssl (test
# certificates), curl (gateway and health tests), dig (DNS tests). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
# The TLS tests make throwaway certificates with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The HTTP gateway and health tests drive kvd and etcd with curl.
command -v curl >/dev/null 2>&1 || need+=(curl)
# `timeout` stops etcdctl watches in the CN tests.
command -v timeout >/dev/null 2>&1 || need+=(coreutils)
# The DNS tests of kv-discovery also ask with `dig`.
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
# kvd's allocator (tikv-jemallocator) builds jemalloc from source with make and cc.
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's package may start an etcd of its own on 2379; tests use their own ports,
# but a newcomer running kvd on 2379 needs it gone.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  ${SUDO:-} systemctl stop etcd || true
fi

# Clients we did not write, for server/tests/compat.rs: PyPI's and npm's etcd3.
compat=server/tests/compat
venv=target/compat-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import etcd3, prometheus_client" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$compat/requirements.txt"
fi
if [ ! -d "$compat/node_modules/etcd3" ]; then
  (cd "$compat" && npm install --silent --no-audit --no-fund --no-package-lock >/dev/null)
fi

# The newest etcd (server, etcdctl, etcdutl), built from the Go module proxy: the
# fault campaign and kvctl's auth parity test compare against it, and the
# recipes' Go interop test builds offline from the module cache this fills.
bash scripts/etcd-latest.sh >/dev/null
