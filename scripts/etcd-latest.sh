#!/usr/bin/env bash
# Builds the newest etcd release (server, etcdctl and etcdutl) from the Go module
# proxy into .cache/etcd-<version>/ and prints the directory. Idempotent:
# a finished build is reused. Used by the fault campaign and the benchmarks.
#
#   scripts/etcd-latest.sh            # prints e.g. /repo/.cache/etcd-v3.7.3
#   ETCD_LATEST_VERSION=v3.6.16 scripts/etcd-latest.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${ETCD_LATEST_VERSION:-v3.7.3}
OUT=$ROOT/.cache/etcd-$VERSION
if [[ -x $OUT/etcd && -x $OUT/etcdctl && -x $OUT/etcdutl ]]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "etcd-latest: go is not installed" >&2; exit 1; }
# `go install pkg@version` refuses modules with replace directives (etcd's
# have them), so build from a throwaway module that requires the release.
WORK=$(mktemp -d -t etcd-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
go mod init kv.local/etcdbuild >/dev/null 2>&1
cat > tools.go <<GO
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
GO
go get "go.etcd.io/etcd/server/v3@$VERSION" "go.etcd.io/etcd/etcdctl/v3@$VERSION" \
  "go.etcd.io/etcd/etcdutl/v3@$VERSION" >&2
mkdir -p "$OUT.tmp"
go build -trimpath -o "$OUT.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
go build -trimpath -o "$OUT.tmp/etcdctl" go.etcd.io/etcd/etcdctl/v3 >&2
go build -trimpath -o "$OUT.tmp/etcdutl" go.etcd.io/etcd/etcdutl/v3 >&2
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$OUT"
