#!/usr/bin/env bash
# Prints the path of etcdutl from the newest etcd release, which
# scripts/etcd-latest.sh builds (or finds built) beside etcd and etcdctl.
#
#   etcdsnap/scripts/etcdutl-latest.sh      # prints e.g. /repo/.cache/etcd-v3.7.3/etcdutl
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=$(bash "$ROOT/scripts/etcd-latest.sh")
echo "$DIR/etcdutl"
