#!/usr/bin/env bash
# Builds etcdutl of the newest etcd release from the Go module proxy into
# <repo>/.cache/etcdutl-<version>/etcdutl and prints that path. Idempotent.
# Like scripts/etcd-latest.sh: `go install` refuses etcd's modules (replace
# lines), so build from a throwaway module that requires the release.
#
#   etcdsnap/scripts/etcdutl-latest.sh      # prints e.g. /repo/.cache/etcdutl-v3.7.3/etcdutl
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=${ETCD_LATEST_VERSION:-v3.7.3}
OUT=$ROOT/.cache/etcdutl-$VERSION
if [[ -x $OUT/etcdutl ]]; then echo "$OUT/etcdutl"; exit 0; fi
command -v go >/dev/null || { echo "etcdutl-latest: go is not installed" >&2; exit 1; }
WORK=$(mktemp -d -t etcdutl-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
go mod init kv.local/etcdutlbuild >/dev/null 2>&1
cat > tools.go <<GO
//go:build tools

package tools

import _ "go.etcd.io/etcd/etcdutl/v3"
GO
go get "go.etcd.io/etcd/etcdutl/v3@$VERSION" >&2
mkdir -p "$OUT.tmp"
go build -trimpath -o "$OUT.tmp/etcdutl" go.etcd.io/etcd/etcdutl/v3 >&2
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$OUT/etcdutl"
