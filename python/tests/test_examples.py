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


def test_load_balance_example_balances_and_keeps_the_result() -> None:
    plain = run_job(2, EXAMPLES / "load_balance.py", "12", "20", "5")
    assert plain.returncode == 0, plain.stderr
    greedy = run_job(2, EXAMPLES / "load_balance.py", "12", "20", "5", "+balancer", "GreedyLB", "+LBDebug", "1")
    assert greedy.returncode == 0, greedy.stderr
    assert "charmrs LB [GreedyLB] step 0" in greedy.stdout
    def result(out: str) -> tuple[int, str]:
        m = re.search(r"(\d+) moves, checksum (\S+)", out)
        assert m, out
        return int(m.group(1)), m.group(2)
    assert result(plain.stdout)[0] == 0
    moves, checksum = result(greedy.stdout)
    assert moves > 0
    assert checksum == result(plain.stdout)[1]
