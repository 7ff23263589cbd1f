"""charmrs.ray: the Ray-style API (remote functions, actors, object references)."""

import pytest
from _jobs import PROGS, run_job


@pytest.mark.parametrize("pes,ppn", [(1, 1), (3, 1), (2, 2)])
def test_ray_api(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "ray_api.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if ": " in l]
    assert len(lines) >= 15 and all(l.endswith(": True") for l in lines), r.stdout
