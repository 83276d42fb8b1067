#!/usr/bin/env bash
# Builds and tests the Python package (bindings/python) the way a user
# installs it: `pip install ./bindings/python` into a venv, then pytest
# against real kvd and etcd 3.4 processes, mypy stubtest of the compiled
# module, and `mypy --strict` on the README's examples.
#
# A dev-profile build into the workspace target dir keeps CI quick; set
# KVCLIENT_PROFILE=release for an optimized build (e.g. for bench/python).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$ROOT/target/py-venv"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
export PATH="$VENV/bin:$PATH"
pip install --quiet --disable-pip-version-check "maturin>=1.9,<2" pytest pytest-timeout mypy

# The extension: built by maturin (the PEP 517 backend) into the shared
# target dir. No build isolation: maturin is already in the venv.
export CARGO_TARGET_DIR="$ROOT/target"
export MATURIN_PEP517_ARGS="--profile ${KVCLIENT_PROFILE:-dev}"
pip install --quiet --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./bindings/python

# The servers the tests start.
if [ ! -x target/debug/kvd ] && [ -z "${KVD_BIN:-}" ]; then
    cargo build -p kvd --bin kvd
fi
which etcd >/dev/null || echo "note: etcd not installed; the etcd-side tests are skipped" >&2

# Stubs against the compiled module, then the README's examples (run from
# outside the source tree so the installed package is what is checked).
(cd "$ROOT/target" && stubtest kvclient)
# The stub's docstrings are the compiled module's (help() and editors show
# the same text), and every public class and method has an example.
(cd "$ROOT/target" && python "$ROOT/bindings/python/scripts/stub_docs.py" --check)
EXAMPLES="$ROOT/target/py-readme-examples"
rm -rf "$EXAMPLES" && mkdir -p "$EXAMPLES"
python - "$ROOT/bindings/python/README.md" "$EXAMPLES" <<'PYEOF'
import re, sys, pathlib
text = pathlib.Path(sys.argv[1]).read_text()
blocks = re.findall(r"```python\n(.*?)```", text, re.S)
assert blocks, "no python examples in the README"
for i, b in enumerate(blocks):
    pathlib.Path(sys.argv[2], f"readme_{i:02d}.py").write_text(b)
print(f"{len(blocks)} README examples")
PYEOF
(cd "$EXAMPLES" && mypy --strict --no-incremental .)

cd bindings/python
python -m pytest -q -p no:cacheprovider tests "$@"
