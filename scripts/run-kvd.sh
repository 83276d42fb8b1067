#!/usr/bin/env bash
# Builds and runs kvd: a single-member cluster on 127.0.0.1:2379, data in ./default.kvd.
set -euo pipefail
exec cargo run --release --bin kvd -- "$@"
