#!/usr/bin/env bash
# Every check of the project, in the order CI runs them: system packages, formatting,
# clippy (warnings are errors), all tests of the workspace (unit, property, doc,
# compile-fail, and the integration tests that run the examples as real processes,
# as jobs of several processes and across network-namespace hosts), the rustdoc of
# every crate (warnings are errors), the loom models, and a compile check of the
# benchmarks; then the Python package (ci/python.sh: wheel, install, pytest).
set -euxo pipefail
cd "$(dirname "$0")/.."

ci/deps.sh
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all --check
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets -- -D warnings
fi
cargo test --workspace
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
ci/loom.sh
cargo check -p charmrs-benches --benches
ci/python.sh
