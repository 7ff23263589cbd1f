"""Interactive mode (``python -m charmrs.run +pN ++interactive``): a prompt on PE 0 of a
running job, fed here through its standard input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from _jobs import ROOT

SESSION = """\
import math
class Worker(Chare):
    def work(self, cb):
        self.contribute(2, Reducer.sum, cb)
    def root(self, x):
        return math.sqrt(x) + charm.myPe()

g = Group(Worker)
g.work(future())
assert _f.get() == charm.numPes() * 2
print("sum ok", charm.myPe())
print("root", g[charm.numPes() - 1].root(16, ret=True).get() == 4 + charm.numPes() - 1)
undefined_name
print("after error")
charm.thisProxy.exec("def sevens(contribs):\\n    return [7 for _ in contribs]", awaitable=True).get()
charm.thisProxy.addReducer(sevens, awaitable=True).get()
print("console is a chare:", isinstance(self, Chare))
exit()
print("not reached")
"""


def _session(cmd: list[str], pes: int, **env: str) -> None:
    """Feeds SESSION to the prompt of the job ``cmd`` starts (``pes`` PEs) and checks
    what it printed."""
    r = subprocess.run(
        cmd,
        input=SESSION,
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ, CHARMRS_WARN="hwloc,oversubscribed", **env),
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    if pes > 1:
        assert "Charm4py> Broadcasted import statement" in r.stdout
        assert "Charm4py> Broadcasted Chare definition" in r.stdout
    assert "sum ok 0" in r.stdout
    assert "root True" in r.stdout
    assert "NameError: name 'undefined_name' is not defined" in r.stderr
    assert "after error" in r.stdout
    assert "console is a chare: True" in r.stdout
    assert "not reached" not in r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_interactive_session(pes: int) -> None:
    _session([sys.executable, "-m", "charmrs.run", f"+p{pes}", "++interactive"], pes)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (Debian: openmpi-bin; ci/deps.sh installs it)")
@pytest.mark.parametrize("module", [["charmrs.run", "++interactive"], ["charmrs.interactive"]])
def test_interactive_session_under_mpirun(module: list[str]) -> None:
    # Open MPI refuses root, and more processes than cores, unless told; its stdin goes
    # to rank 0, where the prompt is.
    _session(
        ["mpirun", "-np", "2", sys.executable, "-m", *module],
        2,
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        OMPI_MCA_rmaps_base_oversubscribe="1",
    )
