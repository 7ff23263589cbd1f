#!/usr/bin/env python3
"""Runs bench_prog.py on charmrs and on Charm4py 1.1 (and mpi_prog.py on mpi4py under
Open MPI, where MPI has the operation), side by side, and prints the
medians of several runs and the ratio (how many times faster charmrs is).

    python3 benches/python/compare.py [--runs N] [--quick] [--venv DIR] [--mpi-venv DIR]

Charm4py 1.1 goes into its own virtual environment (``--venv``, default
``target/charm4py-venv``), made with ``pip install charm4py==1.1 numpy`` on first use;
it runs with its own launcher (``python -m charmrun.start +p2``). charmrs must be
installed in this Python (``ci/python.sh`` does it) and runs with ``python -m
charmrs.run +p2 ++ppn 1`` (two processes, as Charm4py's two PEs are). Both run the same
file: it imports ``charm4py``, which charmrs.run maps to charmrs. With ``mpirun`` and
``mpicc`` on the machine (Debian: ``openmpi-bin libopenmpi-dev``), mpi4py goes into a
venv of its own (``--mpi-venv``, default ``target/mpi4py-venv``) and ``mpi_prog.py``
runs on 2 ranks; its rows compare charmrs to it (goal: within 3x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import shutil
import sys
import time
import venv
from typing import Optional
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROG = Path(__file__).resolve().parent / "bench_prog.py"

# Lower is better except for rates.
RATES = {"msgs_per_s"}


def charm4py_python(venv_dir: Path) -> Path:
    py = venv_dir / "bin" / "python"
    if not py.exists():
        print(f"making {venv_dir} with charm4py==1.1 ...", file=sys.stderr)
        venv.create(venv_dir, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "charm4py==1.1", "numpy"], check=True)
    return py


def run(cmd: list[str], env: dict[str, str]) -> dict[str, tuple[float, str]]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            _, name, value, unit = line.split()
            out[name] = (float(value), unit)
    return out


MPI_PROG = Path(__file__).resolve().parent / "mpi_prog.py"


def mpi4py_python(venv_dir: Path) -> Optional[Path]:
    """The venv's python with mpi4py (built against this machine's MPI: needs
    ``mpicc``, e.g. Debian's ``libopenmpi-dev``), made on first use; None without MPI."""
    py = venv_dir / "bin" / "python"
    if shutil.which("mpirun") is None or shutil.which("mpicc") is None:
        print("no mpirun/mpicc (apt-get install openmpi-bin libopenmpi-dev): no mpi4py rows", file=sys.stderr)
        return None
    if not py.exists():
        print(f"making {venv_dir} with mpi4py ...", file=sys.stderr)
        venv.create(venv_dir, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "mpi4py", "numpy"], check=True)
    return py


def _square(x: int) -> int:
    return x * x


def mp_pool_map(reps: int) -> float:
    """The same map as ``pool_map1000_chunk10`` on a ``multiprocessing.Pool`` of 2
    processes (made once, as charm.pool's workers are): seconds per map."""
    import multiprocessing

    with multiprocessing.Pool(2) as p:
        p.map(_square, range(1000), chunksize=10)  # warm up
        t0 = time.perf_counter()
        for _ in range(reps):
            assert len(p.map(_square, range(1000), chunksize=10)) == 1000
        return (time.perf_counter() - t0) / reps


#: The ping-pong rows with a numpy payload, and its size in bytes.
BANDWIDTH = {"pingpong_64KiB": 64 << 10, "pingpong_1MiB": 1 << 20, "pingpong_8MiB": 8 << 20}


def shm_memcpy_us(size: int, reps: int) -> float:
    """The raw bound of moving ``size`` bytes between two processes through shared
    memory: one copy from a numpy array into a ``/dev/shm`` mapping plus one copy out
    into another (preallocated) array, by one thread; microseconds, median of ``reps``."""
    import mmap

    import numpy as np

    with open(f"/dev/shm/charmrs-bench-{os.getpid()}", "w+b") as f:
        try:
            f.truncate(size)
            m = mmap.mmap(f.fileno(), size)
            shm = np.frombuffer(m, dtype=np.uint8)
            src = np.ones(size, dtype=np.uint8)
            out = np.empty(size, dtype=np.uint8)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                shm[:] = src
                out[:] = shm
                times.append(time.perf_counter() - t0)
            del shm
            m.close()
        finally:
            os.unlink(f.name)
    return statistics.median(times) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test)")
    ap.add_argument("--venv", type=Path, default=ROOT / "target" / "charm4py-venv")
    ap.add_argument("--mpi-venv", type=Path, default=ROOT / "target" / "mpi4py-venv")
    args = ap.parse_args()
    extra = ["--quick"] if args.quick else []
    env = dict(os.environ, CHARMRS_WARN="hwloc")
    c4p = charm4py_python(args.venv)
    runtimes = {
        "charmrs": [sys.executable, "-m", "charmrs.run", "+p2", "++ppn", "1", str(PROG), *extra],
        "charm4py": [str(c4p), "-m", "charmrun.start", "+p2", str(PROG), *extra],
    }
    mpipy = mpi4py_python(args.mpi_venv)
    if mpipy is not None:
        root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
        runtimes["mpi4py"] = ["mpirun", "-np", "2", *root, "--oversubscribe", str(mpipy), str(MPI_PROG), *extra]
    results: dict[str, dict[str, list[float]]] = {k: {} for k in runtimes}
    units: dict[str, str] = {}
    mp: list[float] = []
    memcpy: dict[str, list[float]] = {k: [] for k in BANDWIDTH}
    for i in range(args.runs):
        mp.append(mp_pool_map(5 if args.quick else 50) * 1e6)
        for scenario, size in BANDWIDTH.items():
            memcpy[scenario].append(shm_memcpy_us(size, 5 if args.quick else 50))
        for name, cmd in runtimes.items():  # interleaved, so that drift hits both
            for scenario, (value, unit) in run(cmd, env).items():
                results[name].setdefault(scenario, []).append(value)
                units[scenario] = unit
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    print(f"| scenario (+p2, medians of {args.runs} runs) | charmrs | Charm4py 1.1 | charmrs is faster by |")
    print("|---|---|---|---|")
    for scenario in results["charm4py"]:
        ours = statistics.median(results["charmrs"].get(scenario, [float("nan")]))
        theirs = statistics.median(results["charm4py"][scenario])
        speedup = ours / theirs if scenario in RATES else theirs / ours
        unit = units[scenario]
        print(f"| {scenario} | {ours:.1f} {unit} | {theirs:.1f} {unit} | {speedup:.2f}x |")
    if "mpi4py" in results:
        print()
        print(f"| scenario (2 ranks, medians of {args.runs} runs) | charmrs | mpi4py (Open MPI) | charmrs / mpi4py (goal <= 3x) |")
        print("|---|---|---|---|")
        for scenario in results["mpi4py"]:
            ours = statistics.median(results["charmrs"].get(scenario, [float("nan")]))
            theirs = statistics.median(results["mpi4py"][scenario])
            print(f"| {scenario} | {ours:.1f} us | {theirs:.1f} us | {ours / theirs:.2f}x |")
    print()
    print("| scenario (one way) | charmrs | raw shm memcpy in + out | charmrs bandwidth / bound (goal >= 0.7x) |")
    print("|---|---|---|---|")
    for scenario, size in BANDWIDTH.items():
        ours = statistics.median(results["charmrs"].get(scenario, [float("nan")]))
        bound = statistics.median(memcpy[scenario])
        gbs = size / ours / 1e3
        print(f"| {scenario} | {ours:.1f} us ({gbs:.2f} GB/s) | {bound:.1f} us ({size / bound / 1e3:.2f} GB/s) | {bound / ours:.2f}x |")
    ours = statistics.median(results["charmrs"].get("pool_map1000_chunk10", [float("nan")]))
    theirs = statistics.median(mp)
    print()
    print("| scenario | charmrs | multiprocessing.Pool(2) | charmrs is faster by |")
    print("|---|---|---|---|")
    print(f"| pool_map1000_chunk10 | {ours:.1f} us | {theirs:.1f} us | {theirs / ours:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
