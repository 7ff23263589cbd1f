"""The Python examples (examples/python/), run as jobs like a user runs them."""

from __future__ import annotations

import re

import pytest

from _jobs import ROOT, run_job

EXAMPLES = ROOT / "examples" / "python"


@pytest.mark.parametrize("pes", [1, 3])
def test_reductions_example(pes: int) -> None:
    r = run_job(pes, EXAMPLES / "reductions.py")
    assert r.returncode == 0, r.stderr
    assert "sum of 20 ones: 20" in r.stdout
    assert "longest name: xxxxxx" in r.stdout
    assert "[7] Result is 20" in r.stdout
    pes_line = next(line for line in r.stdout.splitlines() if line.startswith("PE of each element:"))
    assert len(re.findall(r"\d+", pes_line)) == 20


def test_stencil_gives_the_same_result_at_every_pe_count() -> None:
    results = set()
    for pes in [1, 2, 4]:
        r = run_job(pes, EXAMPLES / "stencil.py", "6", "8", "150")
        assert r.returncode == 0, r.stderr
        assert "all elements agree: True" in r.stdout
        line = next(line for line in r.stdout.splitlines() if line.startswith("stencil:"))
        results.add(line.split(" PEs: ")[1])
    assert len(results) == 1, results


@pytest.mark.parametrize("pes", [1, 2])
def test_channels_example(pes: int) -> None:
    r = run_job(pes, EXAMPLES / "channels.py")
    assert r.returncode == 0, r.stderr
    assert f"channels: {8 * pes} chares exchanged 100 steps with both neighbours" in r.stdout
