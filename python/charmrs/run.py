"""The launcher: ``python -m charmrs.run +p4 [++ppn K] [++nodelist F] prog.py args...``,
or ``python -m charmrs.run +p4 ++interactive`` for a Python prompt on PE 0 of a running
job (``charmrs.interactive``). Under an MPI launcher (``mpirun -np 4 python -m
charmrs.run prog.py``, ``srun``), each process it starts runs ``prog.py`` as its part
of the job instead (the processes find each other through PMIx); ``mpirun -np 4 python
-m charmrs.run ++interactive`` gives the prompt on rank 0.

Takes the options of ``charmrs-run`` (the same code) and runs ``prog.py`` with this
interpreter in every process of the job. Programs written for Charm4py run unchanged:
in the processes it starts, ``import charm4py`` gives ``charmrs`` (unless the
environment sets ``CHARMRS_CHARM4PY_ALIAS=0``), and the thread pools of numerical
libraries (OpenMP, OpenBLAS, MKL, numexpr) have one thread unless the environment
says otherwise: the PEs already use every core.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import faulthandler
import os
import runpy
import signal
import sys
import types
from typing import Any, Optional

WORKER = "--charmrs-worker"


#: Sizes of the thread pools of numerical libraries, set to 1 in the job's processes
#: unless the environment sets them.
_THREAD_POOL_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import charm4py.X`` gives the module ``charmrs.X`` itself (one copy of it)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if name.startswith("charm4py."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module("charmrs" + spec.name[len("charm4py") :])

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # already executed as charmrs.X


def _worker(argv: list[str]) -> None:
    """In a process of the job: runs the program as ``__main__``.

    Output is line-buffered: each line reaches the launcher's output in one write, so
    the lines of several processes never mix within a line (unbuffered output would
    write a ``print``'s pieces separately), and a line is not held back."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    # Each PE is a thread pinned to a core: BLAS and OpenMP thread pools of their own
    # (one thread per core each, and OpenBLAS's threads spin a while after a call)
    # would only take cores from the PEs, as Ray's workers avoid too. The user's own
    # settings win.
    for var in _THREAD_POOL_VARS:
        os.environ.setdefault(var, "1")
    # `kill -USR1 <pid>` (and the launcher on ++timeout) prints where every thread of
    # this process is: the PE running a method that never returns shows it.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    if os.environ.get("CHARMRS_CHARM4PY_ALIAS", "1") != "0":
        import charmrs

        sys.modules.setdefault("charm4py", charmrs)
        sys.meta_path.insert(0, _Alias())
    prog = argv[0]
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(prog)))
    runpy.run_path(prog, run_name="__main__")
    from .charm import charm

    if not charm.started:
        # As Charm4py warns at exit (charm.start() ends the process: it never returns).
        print(
            "charmrs: the program is exiting but charm was not started: charm.start() was not called",
            file=sys.stderr,
        )


def launch(argv: list[str]) -> int:
    """Runs the job that the launcher options and program of ``argv`` describe (the
    command line without the command: ``['+p4', 'prog.py', 'arg']``), with this
    interpreter in every process; waits for it to end and returns its exit status."""
    from . import _charmrs

    console = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interactive.py")
    return _charmrs.launch(argv, sys.executable, console)


#: Rank variables of MPI launchers (Open MPI, PMIx, Slurm): one of them set means an MPI
#: launcher started this process.
_MPI_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def _under_mpi_launcher() -> bool:
    """Whether an MPI launcher (``mpirun -np 4 python -m charmrs.run prog.py``, ``srun``)
    started this process without ``charmrs.run``'s launcher: then it is one process of
    the job (which finds the others through PMIx), not a launcher."""
    return "CHARMRS_NUM_PROCESSES" not in os.environ and any(v in os.environ for v in _MPI_RANK_VARS)


def main() -> int:
    """Runs the job of the command line; returns its exit status. Under an MPI
    launcher, runs the program as this process's part of the job."""
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        _worker(sys.argv[2:])
        return 0
    if _under_mpi_launcher() and sys.argv[1:] == ["++interactive"]:
        # `mpirun -np 4 python -m charmrs.run ++interactive`: the prompt on rank 0.
        _worker([os.path.join(os.path.dirname(os.path.abspath(__file__)), "interactive.py")])
        return 0
    if _under_mpi_launcher() and len(sys.argv) > 1 and not sys.argv[1].startswith("+"):
        _worker(sys.argv[1:])
        return 0
    return launch(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
