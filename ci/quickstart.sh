#!/usr/bin/env bash
# From a fresh clone: installs what building needs (ci/deps.sh), builds the Python
# package into a virtual environment under target/ and runs the hello example as a job
# of 4 processes. Needs a Rust toolchain and Python 3.9+ with venv (Debian/Ubuntu:
# python3-venv, which ci/deps.sh installs when it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

ci/deps.sh
PY=${PYTHON:-python3}
VENV=target/quickstart-venv
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "maturin==1.16.0" "numpy>=1.23"
rm -rf target/quickstart-wheels
(cd python && CARGO_TARGET_DIR=../target ../"$VENV"/bin/python -m maturin build --release --out ../target/quickstart-wheels)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall target/quickstart-wheels/charmrs-*.whl
exec "$VENV/bin/python" -m charmrs.run +p4 examples/python/hello.py
