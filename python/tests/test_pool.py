"""``charm.pool`` as real jobs through ``python -m charmrs.run``."""

from __future__ import annotations

import pytest
from _jobs import PROGS, ROOT, run_job


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (4, 1), (4, 2)])
def test_pool(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "pool.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"pool: all checks passed on {pes} PEs" in r.stdout


@pytest.mark.parametrize("pes", [1, 3])
def test_the_manuals_pool_examples(pes: int) -> None:
    r = run_job(pes, ROOT / "examples" / "python" / "pool.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in r.stdout
    assert "fibonacci(13)= 233" in r.stdout


def test_errors_held_but_never_awaited_are_warnings_at_the_end() -> None:
    r = run_job(2, PROGS / "held_errors.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "caught: task 0 fails" in r.stdout and "held errors: done" in r.stdout, r.stdout
    assert r.stderr.count("an error was never awaited") == 3, r.stderr
