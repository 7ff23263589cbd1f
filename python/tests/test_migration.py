"""Migration (``migrate``, ``migrated``) and load balancing (``AtSync``,
``resumeFromSync``, ``setMigratable``, ``+balancer``), as real jobs through
``python -m charmrs.run``."""

from __future__ import annotations

import re

import pytest
from _jobs import PROGS, run_job


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (4, 1), (4, 2)])
def test_migration_under_load_loses_nothing(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "migration.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"migration: 0 mismatches on {pes} PEs" in r.stdout


def test_a_chare_that_does_not_pickle_cannot_migrate() -> None:
    r = run_job(2, PROGS / "migration.py", "unpicklable")
    assert r.returncode != 0
    assert "NOT REFUSED" not in r.stdout
    assert "does not serialize for migration: pickling the Cell object failed" in r.stderr
    assert "cannot pickle '_thread.lock' object" in r.stderr


def _balance(r: object) -> tuple[str, int, bool]:
    out = getattr(r, "stdout")
    m = re.search(r"balance: checksum (\S+), (\d+) moves, non-migratables stayed: (\w+)", out)
    assert m, out + getattr(r, "stderr")
    return m.group(1), int(m.group(2)), m.group(3) == "True"


@pytest.mark.parametrize("pes,ppn", [(2, 1), (4, 2)])
def test_load_balancers_move_only_migratable_chares(pes: int, ppn: int) -> None:
    plain = run_job(pes, PROGS / "balance.py", ppn=ppn)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    want, moves, stayed = _balance(plain)
    assert moves == 0 and stayed
    for b in ["GreedyLB", "RefineLB", "GreedyRefineLB", "RotateLB", "RandCentLB", "DistributedLB"]:
        r = run_job(pes, PROGS / "balance.py", "+balancer", b, "+LBDebug", "1", ppn=ppn)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"charmrs LB [{b}] step 1" in r.stdout
        sum_, moves, stayed = _balance(r)
        assert sum_ == want, b
        assert stayed, f"{b} moved a chare that called setMigratable(False)"
        if b == "RotateLB":
            # The 6 migratable blocks move at each of the 2 steps.
            assert moves == 12


def test_an_unknown_balancer_is_a_clear_error() -> None:
    r = run_job(2, PROGS / "balance.py", "+balancer", "NoSuchLB")
    assert r.returncode != 0
    assert "invalid value 'NoSuchLB' for runtime option '+balancer'" in r.stderr
