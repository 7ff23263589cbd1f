#!/usr/bin/env bash
# The Python package: builds the wheel with maturin (reusing the workspace's target
# directory), installs it into this Python, and runs its pytest suite, which starts real
# jobs through `python -m charmrs.run`; then mypy --strict on the package and stubtest
# on the native module's stubs. Installs what it needs from PyPI.
set -euxo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check "maturin==1.16.0" "pytest>=8" "pytest-timeout>=2.3" \
    "mypy>=1.13" "types-greenlet" "numpy>=1.23"
rm -rf target/wheels
(cd python && CARGO_TARGET_DIR=../target "$PY" -m maturin build --release --out ../target/wheels)
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall target/wheels/charmrs-*.whl
"$PY" -m pytest -q python/tests
# Types: the package under mypy --strict, and the native module's stubs against the
# module itself (run outside python/, whose charmrs/ has no native module).
(cd python && "$PY" -m mypy --strict charmrs charmrun)
(cd target && "$PY" -m mypy.stubtest charmrs._charmrs)
