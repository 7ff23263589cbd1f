"""The ``charm`` object: starts the runtime, tells where code runs, waits."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from greenlet import getcurrent

from . import _charmrs, _glue
from .exceptions import CharmError
from .chare import Chare, _create_single
from . import future as _future
from .future import Future, _wait_any
from .pool import Pool
from .pool import pool as _pool
from .readonly import flush as _ro_flush


class Options:
    """``charm.options``: set before ``charm.start()``.

    - ``remote_exec`` (default False): allows ``charm.thisProxy[...].exec(code)`` and
      ``.eval(expression)``.
    - ``pickle_protocol`` (default -1, the highest): charmrs always uses protocol 5
      (out-of-band numpy data needs it); a lower value is accepted and has no effect.
    - ``local_msg_optim`` (default False, as in Charm4py 1.1; the manual says True):
      set to True, a call (or a channel message) to a single chare of the same process
      passes its arguments by reference, as the manual's "Rules and Semantics"
      describe: the callee gets the caller's very objects, nothing is pickled or
      copied. The caller must then not change what it sent (a numpy view of an array it
      keeps updating, as stencil codes send, would change under the callee). False
      (the default) copies every call's arguments (pickled, numpy arrays copied once),
      also on the same PE: programs written for Charm4py 1.1 rely on it. A section
      multicast passes them by reference to its members in the process too; other
      broadcasts copy for each process, and the recipients in one process share one
      copy.
      A call to an element that moved to another process after the call was made is
      pickled when it is forwarded.
    - ``local_msg_buf_size``: accepted for compatibility; no effect (there is no pool
      of local messages to size).
    - ``profiling`` (default False): set before ``charm.start`` to time each entry
      method (and its sends and argument unpickling) and count messages, per PE;
      ``charm.printStats()`` prints the table. It costs a few clock reads per message.
    - ``quiet``: no start-up notices (the profiling one); ``++quiet`` on the launcher
      does the same and also silences the runtime's warnings.
    - ``auto_flush_wait_queues`` (default True): ``@when`` conditions and
      ``Chare.wait`` are re-checked after each method of their chare; charmrs always
      does so, and False is accepted with no effect.
    - ``interactive.verbose`` (1), ``interactive.broadcast_imports`` (True): switches
      of the interactive mode; accepted (the console always sends imports to every
      PE).

    The upper-case names of Charm4py before 1.0 (``Options.PROFILING`` and the
    others, set on the class) are refused at ``charm.start`` with a clear error.
    """

    def __init__(self) -> None:
        self.remote_exec = False
        self.pickle_protocol = -1
        self.local_msg_optim = False
        self.local_msg_buf_size = 50
        self.profiling = False
        self.quiet = False
        self.auto_flush_wait_queues = True
        self.interactive = _InteractiveOptions()


class _InteractiveOptions:
    """``charm.options.interactive``."""

    def __init__(self) -> None:
        self.verbose = 1
        self.broadcast_imports = True


#: Charm4py's option names before 1.0, set on ``Options`` itself.
_LEGACY_OPTIONS = (
    "PROFILING",
    "PICKLE_PROTOCOL",
    "LOCAL_MSG_OPTIM",
    "LOCAL_MSG_BUF_SIZE",
    "AUTO_FLUSH_WAIT_QUEUES",
    "QUIET",
)


class _Charm:
    """The runtime facade (Charm4py's ``charm``). Nothing starts before ``start``."""

    def __init__(self) -> None:
        self.options = Options()
        #: The proxy of the runtime's own group (``charm.thisProxy[pe].method(...)``),
        #: set when the runtime starts.
        self.thisProxy: Any = None
        #: The task pool shared by every process (``charm.pool.map(f, items)``).
        self.pool: Pool = _pool
        #: Whether ``start`` was called in this process.
        self.started = False

    def start(self, entry: Any = None, classes: Sequence[type] = (), modules: Sequence[str] = (), interactive: bool = False) -> None:
        """Starts the runtime and runs ``entry(args)`` as a coroutine on PE 0 of the
        job (``entry`` is a function, or a chare class created on PE 0 with ``args``);
        ends the process with the job's exit code when the job ends. Chare classes
        need no registration (``classes`` and ``modules`` are accepted and ignored).
        ``interactive=True``: no entry point; a Python prompt runs on PE 0 instead
        (``charmrs.interactive``; remote exec and eval are allowed)."""
        if interactive:
            from .interactive import main as console

            self.options.remote_exec = True
            entry = console
        if entry is None:
            raise TypeError("charm.start needs an entry point: a function or a chare class")
        self.started = True
        argv = list(sys.argv)
        user = entry
        if isinstance(entry, type) and issubclass(entry, Chare):
            cls = entry

            def user(args: list[str]) -> None:
                # As in Charm4py, the entry chare's constructor is a coroutine.
                _create_single(cls, [args], 0, _coro_init=True)

        def main(args: list[str]) -> None:
            from .chare import Group

            # The runtime's own group first: charm.thisProxy works on every PE before
            # the program's code runs.
            self.thisProxy = Group(_CharmRemote)
            self.awaitCreation(self.thisProxy)
            if self.options.profiling and not (self.options.quiet or os.environ.get("CHARMRS_QUIET")):
                print("charmrs> Profiling is ON (this affects performance)", flush=True)
            user(args)
            _ro_flush()

        # The program sees its own arguments, the runtime's options taken out (as
        # Charm++ does): `+balancer GreedyLB` is not in main's `args`.
        legacy = [name for name in _LEGACY_OPTIONS if hasattr(Options, name)]
        if legacy:
            raise CharmError(
                f"Options API has changed. Use charm.options instead (Options.{legacy[0]} was set; "
                f"for example charm.options.{legacy[0].lower()})"
            )
        _charmrs.set_profiling(bool(self.options.profiling))
        _charmrs.set_local_msg_optim(bool(self.options.local_msg_optim))
        code = _charmrs.start(_glue.main(main, _charmrs.user_args(argv)), argv)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(code)

    def myPe(self) -> int:  # noqa: N802 (Charm4py's name)
        """This PE's number."""
        return _charmrs.my_pe()

    def numPes(self) -> int:  # noqa: N802
        """The number of PEs of the job."""
        return _charmrs.num_pes()

    def exit(self, exit_code: int = 0) -> None:
        """Ends the job with ``exit_code`` once the current method returns."""
        _charmrs.exit(exit_code)

    def abort(self, message: str) -> None:
        """Ends the job at once, printing ``message`` and where it was called from
        (the stack of this PE; exit status 1)."""
        import traceback

        sys.stderr.write("charmrs: abort called from:\n" + "".join(traceback.format_stack()[:-1]))
        sys.stderr.flush()
        _charmrs.abort(message)

    # The manual's older names (v0.9).

    def CkMyPe(self) -> int:  # noqa: N802
        """Old name of ``myPe``."""
        return self.myPe()

    def CkNumPes(self) -> int:  # noqa: N802
        """Old name of ``numPes``."""
        return self.numPes()

    def CkExit(self, exit_code: int = 0) -> None:  # noqa: N802
        """Old name of ``exit``."""
        self.exit(exit_code)

    def CkAbort(self, message: str) -> None:  # noqa: N802
        """Old name of ``abort``."""
        self.abort(message)

    def addReducer(  # noqa: N802 (Charm4py's name)
        self, func: Callable[..., Any], pre: Optional[Callable[..., Any]] = None, post: Optional[Callable[..., Any]] = None
    ) -> None:
        """``Reducer.addReducer`` (register it in every process, at import time of the
        program, or broadcast ``charm.thisProxy.addReducer``)."""
        from .reduction import Reducer

        Reducer.addReducer(func, pre=pre, post=post)

    def LBTurnInstrumentOn(self) -> None:  # noqa: N802
        """Accepted (Charm++'s name): the entry-method times of migratable chares are
        measured whenever the job has a balancer (``+balancer``), and only then."""

    def LBTurnInstrumentOff(self) -> None:  # noqa: N802
        """Accepted, see ``LBTurnInstrumentOn``: measuring stops only without a
        balancer."""

    # Hosts, processes and PEs.

    def numHosts(self) -> int:  # noqa: N802
        """The number of hosts of the job."""
        return _charmrs.topology()[0]

    def myHost(self) -> int:  # noqa: N802
        """The host this PE runs on (hosts are numbered in the order of their PEs)."""
        return _charmrs.topology()[1]

    def myNode(self) -> int:  # noqa: N802
        """The process this PE runs in."""
        return _charmrs.topology()[2]

    def numNodes(self) -> int:  # noqa: N802
        """The number of processes of the job."""
        return _charmrs.topology()[3]

    def getHostPes(self, host: int) -> list[int]:  # noqa: N802
        """The PEs of ``host``."""
        return _charmrs.host_pes(host)

    def getHostFirstPe(self, host: int) -> int:  # noqa: N802
        """The first PE of ``host``."""
        pes = _charmrs.host_pes(host)
        if not pes:
            raise ValueError(f"host {host} does not exist")
        return pes[0]

    def getHostNumPes(self, host: int) -> int:  # noqa: N802
        """The number of PEs of ``host``."""
        return len(_charmrs.host_pes(host))

    def getPeHost(self, pe: int) -> int:  # noqa: N802
        """The host of PE ``pe``."""
        return _charmrs.pe_host(pe)[0]

    def getPeHostRank(self, pe: int) -> int:  # noqa: N802
        """The rank of PE ``pe`` among the PEs of its host."""
        return _charmrs.pe_host(pe)[1]

    def getNodeFirstPe(self, node: int) -> int:  # noqa: N802
        """The first PE of process ``node``."""
        return _charmrs.node_first_pe(node)

    def getTopoTreeEdges(  # noqa: N802
        self, pe: int, root_pe: int, pes: Optional[Sequence[int]] = None, bfactor: int = 4
    ) -> tuple[Optional[int], list[int]]:
        """``(parent, children)`` of ``pe`` in the topology-aware spanning tree rooted at
        ``root_pe`` over ``pes`` (all PEs by default)."""
        return _charmrs.topo_tree_edges(pe, root_pe, None if pes is None else list(pes), bfactor)

    def getTopoSubtrees(  # noqa: N802
        self, root_pe: int, pes: Optional[Sequence[int]] = None, bfactor: int = 4
    ) -> list[list[int]]:
        """The subtrees under ``root_pe`` of that tree, one list per child."""
        return _charmrs.topo_subtrees(root_pe, None if pes is None else list(pes), bfactor)

    # Waiting.

    def wait(self, awaitables: Iterable[Any]) -> None:
        """Suspends the current coroutine until every future and channel in
        ``awaitables`` is ready (a channel: it has something to receive). A future
        that holds an exception does not raise here: its ``get()`` does."""
        for a in awaitables:
            if isinstance(a, Future):
                try:
                    a.get()
                except Exception:  # noqa: BLE001 (kept in the future for its get())
                    pass
            elif not a._ready():
                a._wait_future().get()

    def iwait(self, awaitables: Iterable[Any]) -> Iterator[Any]:
        """Yields the futures and channels of ``awaitables`` as they become ready (in a
        coroutine)."""
        pending = []
        for a in awaitables:
            if a._ready():
                yield a
            else:
                pending.append(a)
        while pending:
            # A channel may have received while this coroutine waited for another.
            ready = next((i for i, a in enumerate(pending) if a._ready()), None)
            if ready is not None:
                yield pending.pop(ready)
                continue
            waits = [a if isinstance(a, Future) else a._wait_future() for a in pending]
            i = _wait_any(waits)
            if not isinstance(pending[i], Future):
                waits[i].get()  # consumes the wake-up (its value is already here)
            yield pending.pop(i)

    #: ``charm.Future()``: the same as ``Future()``.
    Future = Future

    def allReduce(self, data: Any, reducer: Any, chare: Any) -> Any:  # noqa: N802
        """``chare.allreduce(data, reducer).get()``: Charm4py's blocking spelling (in a
        coroutine)."""
        return chare.allreduce(data, reducer).get()

    def barrier(self, chare: Any) -> None:
        """Suspends the coroutine until every element of ``chare``'s collection gets
        here (an empty allreduce)."""
        chare.allreduce().get()

    def createFuture(self, senders: int = 1) -> _future.Future:  # noqa: N802
        """A new explicit future (Charm4py's older spelling of ``Future()``)."""
        return Future(senders)

    def iawait(self, awaitables: Iterable[Any]) -> Iterator[Any]:
        """Same as ``iwait``."""
        return self.iwait(awaitables)

    def sleep(self, secs: float) -> None:
        """Suspends the current coroutine for ``secs`` seconds while the PE runs other
        work; outside a coroutine, sleeps like ``time.sleep``."""
        if getcurrent().parent is None:
            time.sleep(secs)
        else:
            Future(_raw=_charmrs.timer(secs)).get()

    def scheduleCallableAfter(self, callable_obj: Callable[..., Any], secs: float, args: Sequence[Any] = ()) -> None:  # noqa: N802
        """Calls ``callable_obj(*args)`` on this PE after at least ``secs`` seconds (a
        function, a ``Future`` or a remote method)."""
        _charmrs.call_after(callable_obj, secs, tuple(args))

    def startQD(self, callback: Any) -> None:  # noqa: N802
        """Starts quiescence detection: ``callback`` (a ``Future`` or a remote method) is
        called once no PE has work and no message is in flight."""
        from .chare import _callback

        target = _callback(callback)
        if isinstance(callback, Future):
            _charmrs.start_qd(future=callback._raw)
        elif target is not None:
            _charmrs.start_qd(proxy=target[0], method=target[1], coro=target[2])
        else:
            raise TypeError(f"startQD's callback is a Future or a remote method, not {callback!r}")

    def waitQD(self) -> None:  # noqa: N802
        """Suspends the current coroutine until quiescence."""
        f = Future()
        self.startQD(f)
        f.get()

    def printStats(self) -> None:  # noqa: N802
        """Prints this PE's profile (``charm.options.profiling = True`` before
        ``charm.start``): for each chare class and entry method run here, the seconds
        in the method (``em``), in the sends it made (``send``) and in unpickling its
        arguments (``recv``); then the count and sizes of the messages this PE sent and
        received. Without profiling, says how to turn it on. The runtime's own per-PE
        counters come with the ``+stats`` option."""
        prof = _charmrs.profile()
        pe = self.myPe()
        if prof is None:
            print(
                f"charm.printStats() on PE {pe}: profiling is off (set charm.options.profiling = True "
                "before charm.start()); +stats prints the runtime's per-PE counters at exit",
                flush=True,
            )
            return
        rows, sent, received, extras = prof
        lines = [f"Timings for PE {pe}:", f"{'':<32}| {'em':>8} | {'send':>8} | {'recv':>8} | {'total':>8} | {'calls':>7} |"]
        total = [0.0, 0.0, 0.0]
        last = None
        for cls, method, em, send, recv, calls in rows:
            if cls != last:
                lines.append(f"----- {cls} -----")
                last = cls
            total = [total[0] + em, total[1] + send, total[2] + recv]
            lines.append(
                f"| {method:<30}| {em:8.3f} | {send:8.3f} | {recv:8.3f} | {em + send + recv:8.3f} | {calls:7d} |"
            )
        # The runtime's own work, as the manual's profile lists it (part of the
        # methods' time above when a method did it).
        for name, secs in zip(("reductions", "custom reductions", "migrating out"), extras):
            lines.append(f"| {name:<30}| {secs:8.3f} | {0.0:8.3f} | {0.0:8.3f} | {secs:8.3f} |")
        lines.append(f"{'':<32}| {total[0]:8.3f} | {total[1]:8.3f} | {total[2]:8.3f} | {sum(total):8.3f} |")
        for what, (n, nbytes, lo, hi) in (("sent", sent), ("received", received)):
            mean = nbytes / n if n else 0.0
            lines.append(f"Messages {what}: {n}")
            lines.append(f"Message size in bytes (min / mean / max): {lo} / {mean:.3f} / {hi}")
            lines.append(f"Total bytes = {nbytes / 1e6:.3f} MB")
        print("\n".join(lines), flush=True)

    # Sections.

    def split(
        self,
        proxy: Any,
        numsections: int,
        section_func: Optional[Callable[[Any], Any]] = None,
        elems: Optional[Sequence[Sequence[Any]]] = None,
    ) -> list[Any]:
        """Splits the group, array or section of ``proxy`` into ``numsections``
        sections; returns their proxies (in a coroutine: it waits for the messages
        that build them). ``section_func(obj)`` runs on each element's PE and returns
        the section numbers the element belongs to (a number, a list; negative or empty:
        none); or ``elems`` lists the indexes of each section. Calling a method on a
        section proxy multicasts it to the members; ``contribute(..., section)`` reduces
        over them."""
        from .chare import _split

        return _split(proxy, numsections, section_func, elems)

    def combine(self, *proxies: Any) -> Any:
        """One section made of every element of ``proxies`` (groups, arrays, sections,
        of any chare classes whose called methods agree): broadcasts and reductions
        over it span them all. Its elements are not addressed one by one."""
        from .chare import _combine

        return _combine(proxies)

    def awaitCreation(self, *proxies: Any) -> None:  # noqa: N802
        """Suspends the current coroutine until every element of the collections of
        ``proxies`` (made by this coroutine) is constructed."""
        for p in proxies:
            created = getattr(p, "_created", None)
            if created is None:
                raise CharmError(f"{p!r} was not created here: awaitCreation takes the proxies that creation returned")
            created.get()


charm = _Charm()


class _CharmRemote(Chare):
    """The methods of ``charm`` that can be called remotely, through
    ``charm.thisProxy`` (a group: one element per PE)."""

    def __init__(self) -> None:
        charm.thisProxy = self.thisProxy

    def exit(self, exit_code: int = 0) -> None:
        """Ends the job with ``exit_code`` (usable as a reduction's callback)."""
        charm.exit(exit_code)

    def myPe(self) -> int:  # noqa: N802
        """This PE's number."""
        return charm.myPe()

    def LBTurnInstrumentOn(self) -> None:  # noqa: N802
        """``charm.LBTurnInstrumentOn()`` on this PE."""
        charm.LBTurnInstrumentOn()

    def LBTurnInstrumentOff(self) -> None:  # noqa: N802
        """``charm.LBTurnInstrumentOff()`` on this PE."""
        charm.LBTurnInstrumentOff()

    def printStats(self) -> None:  # noqa: N802
        """``charm.printStats()`` on this PE (``charm.thisProxy[pe].printStats()``)."""
        charm.printStats()

    def numPes(self) -> int:  # noqa: N802
        """The number of PEs."""
        return charm.numPes()

    def _set_readonlies(self, values: dict[str, Any]) -> None:
        from .readonly import readonlies

        readonlies._set(values)

    def updateGlobals(self, globals_dict: dict[str, Any], module_name: str = "__main__") -> None:  # noqa: N802
        """Sets the globals of module ``module_name`` on this PE's process."""
        sys.modules[module_name].__dict__.update(globals_dict)

    def exec(self, code: str, module_name: str = "__main__") -> None:
        """``exec(code)`` in module ``module_name`` (needs ``charm.options.remote_exec``)."""
        _remote_exec_allowed()
        exec(code, sys.modules[module_name].__dict__)

    def addReducer(self, func: Callable[..., Any], pre: Optional[Callable[..., Any]] = None, post: Optional[Callable[..., Any]] = None) -> None:  # noqa: N802
        """``Reducer.addReducer`` on this PE (broadcast it to register a reducer
        everywhere)."""
        from .reduction import Reducer

        Reducer.addReducer(func, pre=pre, post=post)

    def createArray(  # noqa: N802 (Charm4py's name)
        self,
        cls: type,
        dims: Any = None,
        ndims: int = -1,
        args: Sequence[Any] = (),
        map: Any = None,  # noqa: A002
        useAtSync: bool = False,  # noqa: N803
    ) -> Any:
        """Creates an array on this PE (as ``Array(...)``) and returns its proxy: call it
        with ``ret=True`` to create an array from another PE's point of view."""
        from .chare import Array

        return Array(cls, dims, ndims, args, map, useAtSync)

    def createGroup(self, cls: type, args: Sequence[Any] = (), onPEs: Optional[Sequence[int]] = None) -> Any:  # noqa: N802, N803
        """Creates a group on this PE (as ``Group(...)``) and returns its proxy."""
        from .chare import Group

        return Group(cls, args, onPEs)

    def createChare(self, cls: type, args: Sequence[Any] = (), onPE: int = -1) -> Any:  # noqa: N802, N803
        """Creates a single chare on this PE's behalf (as ``Chare(cls, ...)``) and
        returns its proxy."""
        return Chare(cls, args=args, onPE=onPE)

    def rexec(self, code: str, module_name: str = "__main__") -> None:
        """Charm4py's other name of ``exec``."""
        self.exec(code, module_name)

    def eval(self, expression: str, module_name: str = "__main__") -> Any:
        """``eval(expression)`` in module ``module_name`` (needs ``charm.options.remote_exec``)."""
        _remote_exec_allowed()
        return eval(expression, sys.modules[module_name].__dict__)


def _remote_exec_allowed() -> None:
    if not charm.options.remote_exec:
        raise CharmError("remote exec/eval is off: set charm.options.remote_exec = True before charm.start()")
