"""A bad ArrayMap and a failing inserted element end the job with a clear message and a
non-zero status (never a hang)."""

from __future__ import annotations

import pytest
from _jobs import PROGS, run_job


@pytest.mark.parametrize(
    "mode,message",
    [
        ("range", "returned PE"),
        ("raises", "no place for this one"),
        ("ctor", "negative cell"),
    ],
)
@pytest.mark.parametrize("pes", [1, 2])
def test_collection_errors_end_the_job(mode: str, message: str, pes: int) -> None:
    r = run_job(pes, PROGS / "bad_collections.py", mode)
    assert r.returncode != 0, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert "not reached" not in r.stdout
