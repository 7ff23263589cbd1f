#!/usr/bin/env bash
# Installs what building and testing charmrs needs on a Debian/Ubuntu machine: the hwloc
# library (PE placement), udev (hwloc's static link flags ask for it), pkg-config, and
# iproute2 (the multi-host tests make network-namespace hosts with `ip netns`) and Open
# MPI's mpiexec (the `++mpiexec` tests start jobs with it).
# A Rust toolchain (rustup) must be there already. Idempotent: installs only what is missing.
set -euxo pipefail

need=()
for p in pkg-config libhwloc-dev hwloc libudev-dev iproute2 openmpi-bin; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
# Python virtual environments (ci/quickstart.sh): Debian's python3 needs python3-venv.
if command -v python3 >/dev/null && ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    need+=(python3-venv)
fi
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi
command -v cargo >/dev/null || { echo "charmrs needs a Rust toolchain: https://rustup.rs" >&2; exit 1; }
