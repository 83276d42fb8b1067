#!/usr/bin/env bash
# Builds and tests the Node package (bindings/node): npm install (which
# builds the native addon), a check that the committed generated
# index.js/index.d.ts are current, an install from another project, the
# TypeScript example under `tsc --noEmit --strict`, and the node:test suite
# against kvd (target/debug/kvd) and Debian's etcd 3.4.
#
# KVCLIENT_PROFILE=release builds an optimized addon; the default here is
# debug, which compiles much faster (CI has 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export KVCLIENT_PROFILE="${KVCLIENT_PROFILE:-debug}"
PKG="$ROOT/bindings/node"

command -v node >/dev/null || { echo "test-node.sh: node is not installed" >&2; exit 1; }
if ! command -v etcd >/dev/null; then
  echo "test-node.sh: etcd not found: the etcd half of the suite is skipped (scripts/setup.sh installs it)" >&2
fi
if [ ! -x "$CARGO_TARGET_DIR/debug/kvd" ] && [ -z "${KVD_BIN:-}" ]; then
  cargo build -p kvd --bin kvd
fi
export KVD_BIN="${KVD_BIN:-$CARGO_TARGET_DIR/debug/kvd}"

# 1. npm install builds the addon and regenerates the native bindings.
STALE=$(mktemp -d)
trap 'rm -rf "$STALE"' EXIT
cp "$PKG/index.js" "$PKG/index.d.ts" "$STALE/"
(cd "$PKG" && npm install --no-audit --no-fund)
for f in index.js index.d.ts; do
  if ! diff -u "$STALE/$f" "$PKG/$f"; then
    echo "test-node.sh: bindings/node/$f is stale: commit the regenerated file (npm install in bindings/node rewrote it)" >&2
    exit 1
  fi
done

# 2. `npm install <path>` from another project builds the addon again and
#    both require() and import work.
rm -f "$PKG"/kvclient.*.node
cat >"$STALE/package.json" <<JSON
{ "name": "kvclient-consumer", "version": "1.0.0", "private": true,
  "dependencies": { "kvclient": "file:$PKG" }, "allowScripts": { "kvclient": true } }
JSON
(cd "$STALE" && npm install --no-audit --no-fund >/dev/null &&
  node -e "const { Client, CompactedError } = require('kvclient'); if (typeof Client !== 'function' || typeof CompactedError !== 'function') process.exit(1)" &&
  node --input-type=module -e "import { Client, KvError } from 'kvclient'; if (typeof Client !== 'function' || typeof KvError !== 'function') process.exit(1)")
ls "$PKG"/kvclient.*.node >/dev/null

# 3. The TypeScript example type-checks against the published types.
(cd "$PKG" && npx tsc --noEmit --strict -p examples/tsconfig.json)

# 4. The suite (files run one after another: each starts its own servers).
cd "$PKG"
node --test --test-concurrency=1 test/*.test.mjs
