"""Sparse arrays (``Array(C, ndims=k)``, ``ckInsert``, ``ckDoneInserting``) and
``ArrayMap``, as real jobs through ``python -m charmrs.run``."""

from __future__ import annotations

import pytest
from _jobs import PROGS, run_job


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (4, 1), (4, 2)])
def test_sparse_arrays_and_array_maps(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "sparse.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"sparse: all checks passed on {pes} PEs" in r.stdout
