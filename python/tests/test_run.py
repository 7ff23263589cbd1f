"""The launcher, ``python -m charmrs.run``: what happens to a job when it dies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _jobs import ROOT

PROG = """
import sys, time
from charm4py import charm
if sys.argv[1] == "importing":
    time.sleep(60)  # still importing: no connection to the launcher yet
def main(args):
    while True:
        charm.sleep(0.1)
charm.start(main)
"""


def _children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("phase", ["importing", "running"])
def test_killing_the_launcher_leaves_no_process_behind(tmp_path: Path, phase: str) -> None:
    prog = tmp_path / "forever.py"
    prog.write_text(PROG)
    env = dict(os.environ, CHARMRS_WARN="hwloc,oversubscribed")
    cmd = [sys.executable, "-m", "charmrs.run", "+p3", str(prog), phase]
    launcher = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    try:
        t0 = time.monotonic()
        while len(procs := _children(launcher.pid)) < 3 and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        assert len(procs) == 3, "the job's processes did not start"
        time.sleep(3 if phase == "running" else 0.2)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        t0 = time.monotonic()
        while (left := [p for p in procs if _alive(p)]) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        for p in left:
            os.kill(p, signal.SIGKILL)
        assert not left, f"processes {left} outlived the launcher by 5 s"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_quiet_silences_notices_and_warnings_but_not_output() -> None:
    prog = Path(__file__).resolve().parent / "progs" / "compat_names.py"
    env = {k: v for k, v in os.environ.items() if k not in ("CHARMRS_WARN", "CHARMRS_QUIET")}

    def run(*launcher: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "charmrs.run", "+p4", "++ppn", "1", *launcher, "++timeout", "60", str(prog)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)

    loud = run()
    assert loud.returncode == 0, loud.stdout + loud.stderr
    # 4 PEs on this machine's CPUs (2 in CI) and no hwloc in the wheel: warnings.
    assert "warning" in loud.stderr and "Profiling is ON" in loud.stdout, loud.stdout + loud.stderr
    quiet = run("++quiet")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "warning" not in quiet.stderr and "Profiling is ON" not in quiet.stdout, quiet.stdout + quiet.stderr
    assert "compat names: all checks passed" in quiet.stdout, quiet.stdout


HELLO = """
from charm4py import Chare, Group, charm
class H(Chare):
    def hi(self):
        return charm.myPe()
def main(args):
    g = Group(H)
    print("pes", sorted(g[p].hi(ret=True).get() for p in range(charm.numPes())), args[1:])
    exit(4)
charm.start(main)
"""


def _charmrun_script() -> str:
    import sysconfig

    return os.path.join(sysconfig.get_path("scripts"), "charmrun")


@pytest.mark.parametrize("how", ["module", "command", "function"])
def test_charm4py_launch_commands_run_the_launcher(tmp_path: Path, how: str) -> None:
    prog = tmp_path / "hello.py"
    prog.write_text(HELLO)
    opts = ["+p2", "++ppn", "1", "++timeout", "60", str(prog), "x"]
    cmd = {
        "module": [sys.executable, "-m", "charmrun.start", *opts],
        "command": [_charmrun_script(), *opts],
        "function": [sys.executable, "-c", f"import sys; from charmrun import start; sys.exit(start.start({opts!r}))"],
    }[how]
    env = dict(os.environ, CHARMRS_WARN="hwloc,oversubscribed")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    assert r.returncode == 4, r.stdout + r.stderr  # the program's exit status
    assert "pes [0, 1] ['x']" in r.stdout, r.stdout + r.stderr


CRASH = """
import os
from charm4py import Chare, Group, charm
class C(Chare):
    def boom(self):
        if charm.myPe() == 1:
            os._exit(9)
def main(args):
    g = Group(C)
    g.boom()
    charm.sleep(30)
charm.start(main)
"""

def _check_mpi_status(r: subprocess.CompletedProcess[str], code: int) -> None:
    """The job's status is ``code``; for a crash (9), an MPI launcher returns the status
    of the first process it saw end with an error, which may be one that ended (with 1)
    because the crashed one was gone."""
    ok = r.returncode in (1, 9) if code == 9 else r.returncode == code
    assert ok, f"status {r.returncode}:\n{r.stdout}{r.stderr}"


#: Open MPI refuses root and more processes than cores unless told.
_OMPI = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
}


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec (Debian: openmpi-bin; ci/deps.sh installs it)")
@pytest.mark.parametrize(
    "opts,code,says",
    [
        (["+p2", "++mpiexec"], 4, "pes [0, 1] ['x']"),
        (["+p4", "++ppn", "2", "++mpiexec"], 4, "pes [0, 1, 2, 3] ['x']"),
        (["+p3", "++mpiexec-no-n", "++remote-shell", "mpiexec -n 3"], 4, "pes [0, 1, 2] ['x']"),
        (["+p3", "++mpiexec"], 9, "1 (PE 1)"),
        (["+p4", "++mpiexec-no-n", "++remote-shell", "mpiexec -n 3"], 1, "the MPI launcher started 3 processes"),
    ],
)
def test_mpiexec_starts_the_processes(tmp_path: Path, opts: list[str], code: int, says: str) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(CRASH if code == 9 else HELLO)
    env = dict(os.environ, CHARMRS_WARN="hwloc,oversubscribed", **_OMPI)
    cmd = [sys.executable, "-m", "charmrs.run", *opts, "++timeout", "60", str(prog), "x"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    _check_mpi_status(r, code)
    assert says in r.stdout + r.stderr, r.stdout + r.stderr
    if code == 9:  # the crashed process is named (with any the MPI launcher killed first)
        assert "ended without a word" in r.stderr, r.stderr


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (Debian: openmpi-bin; ci/deps.sh installs it)")
@pytest.mark.parametrize(
    "how,code,says",
    [
        ("module", 4, "pes [0, 1, 2] ['x']"),  # a Charm4py program: charm4py is charmrs
        ("direct", 4, "pes [0, 1, 2] ['x']"),  # a charmrs program run by python itself
        ("crash", 9, "is gone"),
    ],
)
def test_plain_mpirun_starts_a_job_through_pmix(tmp_path: Path, how: str, code: int, says: str) -> None:
    prog = tmp_path / "prog.py"
    text = CRASH if how == "crash" else HELLO
    prog.write_text(text.replace("from charm4py", "from charmrs") if how == "direct" else text)
    env = dict(os.environ, CHARMRS_WARN="hwloc,oversubscribed", **_OMPI)
    run = [sys.executable, str(prog)] if how == "direct" else [sys.executable, "-m", "charmrs.run", str(prog)]
    cmd = ["mpirun", "-np", "3", *run, "x"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT)
    _check_mpi_status(r, code)
    assert says in r.stdout + r.stderr, r.stdout + r.stderr


SPIN = """
from charm4py import Chare, Group, charm
class C(Chare):
    def spin_forever(self):
        if charm.myPe() == 1:
            while True:
                pass
def main(args):
    Group(C).spin_forever(awaitable=True).get()
charm.start(main)
"""


def test_a_timeout_shows_where_each_process_was(tmp_path: Path) -> None:
    prog = tmp_path / "spin.py"
    prog.write_text(SPIN)
    env = dict(os.environ, CHARMRS_WARN="hwloc,oversubscribed")
    cmd = [sys.executable, "-m", "charmrs.run", "+p2", "++timeout", "3", str(prog)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert r.returncode == 124, r.stdout + r.stderr
    dump = r.stderr.split("where process 1 (PE 1) is:", 1)
    assert len(dump) == 2, r.stderr
    assert "in spin_forever" in dump[1], r.stderr  # the busy PE's method, named
    assert "process 1: PE 1 runs _charmrs::PyChare::call" in dump[1], r.stderr
    assert "process 0: PE 0 runs no entry method" in dump[0], r.stderr
    assert "ran past ++timeout" in r.stderr
