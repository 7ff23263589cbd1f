#!/usr/bin/env bash
# The Python package: builds the wheel with maturin (reusing the workspace's target
# directory), installs it into this Python, and runs its pytest suite, which starts real
# jobs through `python -m charmrs.run`. Installs what it needs from PyPI.
set -euxo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check "maturin==1.16.0" "pytest>=8"
rm -rf target/wheels
(cd python && CARGO_TARGET_DIR=../target "$PY" -m maturin build --release --out ../target/wheels)
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall target/wheels/charmrs-*.whl
"$PY" -m pytest -q python/tests
