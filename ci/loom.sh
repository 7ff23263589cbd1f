#!/usr/bin/env bash
# Model-checks the lock-free protocols of the runtime with loom: every test whose
# name contains `loom` (the `loom_tests` modules next to the code: the inbox in
# smp-core/src/queue, the idle protocol in smp-core/src/sched, and the shared-memory
# ring with its doorbell handshake in comm/shm/src/ring).
#
# Loom needs `--cfg loom`, and the models refuse to compile without debug
# assertions (compile_error!), hence `-C debug_assertions` with `--release`.
# LOOM_MAX_PREEMPTIONS=2 bounds the exploration (the models are sized for it).
# A separate target directory keeps the normal build cache valid (RUSTFLAGS differ).
# Extra arguments are passed to cargo test (e.g. `ci/loom.sh -j1`).
set -euxo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
for pkg in ${LOOM_PACKAGE:-charmrs charmrs-shm}; do
    RUSTFLAGS="--cfg loom -C debug_assertions" LOOM_MAX_PREEMPTIONS=2 \
        cargo test --release -p "$pkg" --lib loom "$@"
done
