"""Sections (``charm.split``, ``charm.combine``, proxy slicing, section reductions) as
real jobs through ``python -m charmrs.run``."""

from __future__ import annotations

import pytest
from _jobs import PROGS, ROOT, run_job


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (4, 1), (4, 2)])
def test_sections(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "sections.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"sections: all checks passed on {pes} PEs" in r.stdout


@pytest.mark.parametrize("pes", [1, 3])
def test_the_manuals_section_examples(pes: int) -> None:
    r = run_job(pes, ROOT / "examples" / "python" / "sections.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "section 0 reduction: 4" in r.stdout
    assert r.stdout.count("Hello from") == 2 * ((pes + 1) // 2) + 2 * 32
