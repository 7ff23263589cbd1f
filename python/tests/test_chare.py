"""Groups, arrays and one-sided calls, as real jobs through ``python -m charmrs.run``."""

from __future__ import annotations

import subprocess
from pathlib import Path
import sys

import pytest
from _jobs import PROGS, ROOT, run_job


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_hello_reaches_every_pe_and_the_chain_ends_the_job(pes: int) -> None:
    r = run_job(pes, ROOT / "examples" / "python" / "hello.py")
    assert r.returncode == 0, r.stderr
    for pe in range(pes):
        assert f"Hello from PE {pe} of {pes} (asked by PE 0)" in r.stdout
    assert f"the chain crossed {2 * pes} elements" in r.stdout


def test_two_pes_per_process() -> None:
    r = run_job(4, ROOT / "examples" / "python" / "hello.py", ppn=2)
    assert r.returncode == 0, r.stderr
    assert "the chain crossed 8 elements" in r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_an_exception_nobody_awaits_ends_the_job_with_its_traceback(pes: int) -> None:
    r = run_job(pes, PROGS / "raises.py")
    assert r.returncode != 0
    assert "ValueError: boom on the last PE" in r.stderr
    assert "method boom" in r.stderr


def test_a_bad_launcher_option_is_status_2() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "charmrs.run", "++bogus", "x.py"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert r.returncode == 2
    assert "unknown launcher option '++bogus'" in r.stderr


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_futures_ret_awaitable_explicit_coro_and_remote_exceptions(pes: int) -> None:
    r = run_job(pes, PROGS / "futures.py")
    assert r.returncode == 0, r.stderr
    assert "element 1: 1051" in r.stdout
    assert "awaited: None" in r.stdout
    assert "explicit: 42" in r.stdout
    assert "indices: True True" in r.stdout, r.stdout
    assert "2-d index: True True" in r.stdout, r.stdout
    for check in [
        "multi",
        "caught again",
        "unpicklable",
        "outside",
        "broadcast",
        "single on the last PE",
        "relay",
        "caught",
        "group",
        "numthreads",
    ]:
        assert f"{check}: True" in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_waiting_in_a_plain_method_is_a_clear_error(pes: int) -> None:
    # Also: `from charm4py import ...` runs unchanged under charmrs.run.
    r = run_job(pes, PROGS / "plain_get.py")
    assert r.returncode != 0
    assert "make it from main or from a method decorated with @coro" in r.stderr
    assert "wait_here" in r.stderr
    # The launcher names the process that failed (the last), not those that followed.
    assert f"charmrs.run: process {pes - 1} (PE {pes - 1} on host localhost) exited with status 1" in r.stderr


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_reductions(pes: int) -> None:
    r = run_job(pes, PROGS / "reductions.py")
    assert r.returncode == 0, r.stderr
    for check in ["sum", "vector sum", "max", "gather", "custom", "allreduce", "group allreduce"]:
        assert f"{check}: True" in r.stdout, r.stdout
    assert "empty reduction arrived" in r.stdout
    assert "allreduce: True True" in r.stdout


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_the_charm_object(pes: int) -> None:
    r = run_job(pes, PROGS / "runtime.py")
    assert r.returncode == 3, r.stderr  # exit(3) in a chare method ends the job with 3
    assert "kwargs: True" in r.stdout, r.stdout
    assert "iwait: True True" in r.stdout
    assert "scheduled: later" in r.stdout
    assert "quiescence: True" in r.stdout
    assert "hosts: True True True True True True True True" in r.stdout
    assert "tree: True True True" in r.stdout


@pytest.mark.parametrize("prog", ["futures.py", "reductions.py", "runtime.py"])
def test_several_pes_in_one_process(prog: str) -> None:
    # PE threads share the interpreter (the GIL); each keeps its own thread state, which
    # its greenlets belong to.
    r = run_job(2, PROGS / prog, ppn=2)
    assert r.returncode == (3 if prog == "runtime.py" else 0), r.stderr
    assert "True" in r.stdout and "False" not in r.stdout, r.stdout
    assert "Error" not in r.stderr, r.stderr


@pytest.mark.parametrize("pes", [1, 2])
def test_when_delays_calls_until_their_condition_holds(pes: int) -> None:
    r = run_job(pes, PROGS / "when.py")
    assert r.returncode == 0, r.stderr
    for check in ["order", "returns", "old style", "coro when", "bad condition"]:
        assert f"{check}: True" in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_charm_this_proxy(pes: int) -> None:
    r = run_job(pes, PROGS / "thisproxy.py")
    assert r.returncode == 0, r.stderr  # charm.thisProxy[0].exit ended the job
    assert "remote myPe: True" in r.stdout
    assert "globals: True" in r.stdout
    assert "rexec: True" in r.stdout
    r = run_job(pes, PROGS / "thisproxy.py", "--no-exec")
    assert r.returncode == 5, r.stderr
    assert "refused: True" in r.stdout


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_channels(pes: int) -> None:
    r = run_job(pes, PROGS / "channels.py")
    assert r.returncode == 0, r.stderr
    assert "ring: True" in r.stdout, r.stdout
    assert "order: True" in r.stdout
    assert "numpy: True" in r.stdout, r.stdout


def test_charm4py_spellings() -> None:
    r = run_job(2, PROGS / "compat.py")
    assert r.returncode == 0, r.stderr
    for check in ["eq: True True True True", "awaitable: True True", "nop: True", "array.array sum: True", "iawait: True", "num_vals: True", "charm.Future: True True", "allReduce: True"]:
        assert check in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_a_constructor_that_raises_ends_the_job(pes: int) -> None:
    r = run_job(pes, PROGS / "ctor_raises.py")
    assert r.returncode == 1, r.stderr
    assert "ValueError: boom in the constructor" in r.stderr
    assert "creating a collection failed" in r.stderr


@pytest.mark.parametrize("pes,ppn", [(4, 1), (4, 2)])
def test_large_arrays_cross_in_every_direction_at_once(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "alltoall_big.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "arrays 360 of 360" in r.stdout


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_exit_in_a_constructor_ends_the_job_with_its_status(pes: int) -> None:
    r = run_job(pes, PROGS / "ctor_exit.py")
    assert r.returncode == 7, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (2, 2)])
def test_plain_arguments_keep_their_values_and_types(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "plain_args.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if ": " in l]
    assert len(lines) == 2 * pes + 1 and all(l.endswith(": True") for l in lines), r.stdout


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (2, 2)])
def test_numpy_array_reductions(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "numpy_reductions.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if ": " in l]
    assert len(lines) == 14 and all(l.endswith(": True") for l in lines), r.stdout
    r = run_job(2, PROGS / "numpy_reductions.py", "mismatch")
    assert r.returncode != 0
    assert "different dtypes or shapes" in r.stderr, r.stderr


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_readonlies(pes: int) -> None:
    r = run_job(pes, PROGS / "readonly.py")
    assert r.returncode == 0, r.stderr
    assert "readonlies: True" in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_entry_chare_constructor_is_a_coroutine_and_wait(pes: int) -> None:
    r = run_job(pes, PROGS / "main_chare.py")
    assert r.returncode == 0, r.stderr
    assert "ret in constructor: True" in r.stdout, r.stdout
    assert "waited for count: 4" in r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_contributions_in_a_constructor(pes: int) -> None:
    r = run_job(pes, PROGS / "ctor_contribute.py")
    assert r.returncode == 0, r.stderr
    assert "ctor contributions: True True" in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_coroutine_constructors_and_remote_creation(pes: int) -> None:
    r = run_job(pes, PROGS / "ctor_coro.py")
    assert r.returncode == 0, r.stdout + r.stderr
    for check in ["coro ctors", "remote createArray", "remote createGroup"]:
        assert f"{check}: True" in r.stdout, r.stdout


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (2, 2)])
def test_numpy_arguments_anywhere_in_the_arguments(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "numpy_args.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"numpy args: all checks passed on {pes} PEs" in r.stdout


@pytest.mark.parametrize("pes,ppn", [(1, 1), (3, 1), (2, 2), (4, 2)])
@pytest.mark.parametrize("optim", ["on", "off"])
def test_local_msg_optim_passes_arguments_by_reference_in_the_process(pes: int, ppn: int, optim: str) -> None:
    r = run_job(pes, PROGS / "local_msg_optim.py", *(["on"] if optim == "on" else []), ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"local_msg_optim {optim}: all checks passed" in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_compatibility_names(pes: int) -> None:
    r = run_job(pes, PROGS / "compat_names.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "compat names: all checks passed" in r.stdout, r.stdout
    assert r.stdout.count("charmrs> Profiling is ON") == 1, r.stdout


def test_abort_ends_the_job_with_the_message_and_where_it_was_called(tmp_path: Path) -> None:
    prog = tmp_path / "abort.py"
    prog.write_text(
        "from charm4py import charm\n"
        "def stop():\n    charm.abort('stopping here')\n"
        "def main(args):\n    stop()\n"
        "charm.start(main)\n"
    )
    r = run_job(2, prog)
    assert r.returncode != 0
    assert "abort on PE 0: stopping here" in r.stderr, r.stderr
    assert "abort called from" in r.stderr and "in stop" in r.stderr, r.stderr


def test_legacy_upper_case_options_are_refused(tmp_path: Path) -> None:
    prog = tmp_path / "legacy.py"
    prog.write_text(
        "from charm4py import Options, charm\nOptions.LOCAL_MSG_OPTIM = False\n"
        "def main(args):\n    charm.exit(0)\ncharm.start(main)\n"
    )
    r = run_job(1, prog)
    assert r.returncode != 0
    assert "Options API has changed. Use charm.options instead" in r.stderr, r.stderr


def test_a_program_that_never_starts_the_runtime_is_told(tmp_path: Path) -> None:
    prog = tmp_path / "nostart.py"
    prog.write_text("print('no start')\n")
    r = run_job(2, prog)
    assert r.stdout.count("no start") == 2, r.stdout
    assert "charm.start() was not called" in r.stderr, r.stderr


@pytest.mark.parametrize("pes,ppn", [(1, 1), (3, 1), (2, 2)])
def test_futures_and_proxies_as_arguments(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "arg_objects.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    for check in [
        "futures by position and nested",
        "a multi-value future by position",
        "proxies by position and nested",
        "a future by position to a @when method",
        "an awaitable future is refused",
    ]:
        assert f"{check}: True" in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2])
def test_profiling_and_print_stats(pes: int) -> None:
    r = run_job(pes, PROGS / "profile.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Timings for PE 0:" in r.stdout
    assert f"Timings for PE {pes - 1}:" in r.stdout
    assert "----- <class '__main__.Worker'> as Array -----" in r.stdout
    assert "----- <class '__main__.Main'> as Mainchare -----" in r.stdout
    for row in ("reductions", "custom reductions", "migrating out"):
        assert f"| {row} " in r.stdout, r.stdout
    work = [line for line in r.stdout.splitlines() if line.startswith("| work ")]
    assert work, r.stdout
    assert "Messages sent:" in r.stdout and "Message size in bytes (min / mean / max):" in r.stdout
    off = run_job(pes, PROGS / "profile.py", "--off")
    assert off.returncode == 0, off.stdout + off.stderr
    assert "profiling is off" in off.stdout


def test_numerical_thread_pools_have_one_thread_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    r = run_job(2, PROGS / "thread_pools.py")
    assert r.returncode == 0, r.stderr
    assert "pools: [['1', '1', '1'], ['1', '1', '1']]" in r.stdout, r.stdout
    r = run_job(2, PROGS / "thread_pools.py", env={"OMP_NUM_THREADS": "3"})
    assert "pools: [['3', '1', '1'], ['3', '1', '1']]" in r.stdout, r.stdout


@pytest.mark.parametrize("pes,ppn", [(1, 1), (2, 1), (2, 2)])
def test_python_threads_run_beside_idle_and_busy_pes(pes: int, ppn: int) -> None:
    r = run_job(pes, PROGS / "py_threads.py", ppn=ppn)
    assert r.returncode == 0, r.stdout + r.stderr
    for what in ("idle", "busy Python", "messages"):
        assert f"{what}: advanced" in r.stdout, r.stdout


@pytest.mark.parametrize("pes", [1, 2, 4])
def test_coroutines_and_pool_tasks_on_reused_greenlets(pes: int) -> None:
    r = run_job(pes, PROGS / "workers.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "workers: 257 jobs, 43 failed as asked, 200 at once, pool ok" in r.stdout, r.stdout
