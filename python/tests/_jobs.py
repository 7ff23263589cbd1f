"""Runs test programs as real jobs through ``python -m charmrs.run``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROGS = Path(__file__).resolve().parent / "progs"


def run_job(
    pes: int, prog: Path, *args: str, ppn: int = 1, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``prog`` as a job of ``pes`` PEs (``ppn`` per process), with a timeout;
    ``env`` adds to the environment."""
    env = dict(os.environ, CHARMRS_WARN="hwloc,oversubscribed", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "charmrs.run", f"+p{pes}", "++ppn", str(ppn), "++timeout", "60", str(prog), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,  # not python/: its charmrs/ (no native module) would shadow the installed one
    )
