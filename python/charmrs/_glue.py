"""Called by the native module: builds chares and runs their methods (private)."""

from __future__ import annotations

import contextvars
import importlib
import pickle
import sys
import threading
from typing import Any, Callable, Optional

from greenlet import greenlet

from .future import _from_raw


def _class(path: str) -> type:
    module, _, qualname = path.partition(":")
    mod = sys.modules.get(module) or importlib.import_module(module)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


#: Chare classes by path (``module:qualname``), once resolved.
_CLASSES: dict[str, type] = {}


#: The ``Future`` of a raw future that came as an argument.
future_of = _from_raw


def proxy_of(raw: Any, path: str) -> Any:
    """The proxy of chare class ``path`` over a raw proxy that came as an argument."""
    from .chare import _make_proxy

    cls = _CLASSES.get(path)
    if cls is None:
        cls = _CLASSES[path] = _class(path)
    return _make_proxy(raw, cls)


#: The group members of this process, by (group proxy bytes, PE), for
#: ``ckLocalBranch`` (group members never migrate).
LOCAL_BRANCHES: dict[tuple[bytes, int], Any] = {}


#: The ``id`` of this process's entry chare (``charm.start(ChareClass)``), for the
#: profile's "as Mainchare".
_MAINCHARE: list[int] = []


def is_mainchare(obj: Any) -> bool:
    """Whether ``obj`` is the entry chare (the one ``charm.start`` was given)."""
    return id(obj) in _MAINCHARE


def construct(path: str, args: bytes, index: list[int], proxy: Any, kind: int) -> Any:
    """Makes the element ``index`` of a collection of class ``path``: ``kind`` 0 is a
    group (``thisIndex`` is the PE), 1 an array (``thisIndex`` is a tuple, ``(i,)`` in
    one dimension), 2 a single chare (``thisProxy`` names the chare itself)."""
    from .chare import _make_proxy

    cls = _class(path)
    obj: Any = object.__new__(cls)
    if kind == 0:
        obj.thisIndex = index[0]
        obj.thisProxy = _make_proxy(proxy, cls)
        LOCAL_BRANCHES[(bytes(proxy.to_bytes()), index[0])] = obj
    elif kind == 1:
        obj.thisIndex = tuple(index)
        obj.thisProxy = _make_proxy(proxy, cls)
    else:
        obj.thisIndex = tuple(index)
        obj.thisProxy = _make_proxy(proxy.elem(index), cls)
        if kind == 3:
            _MAINCHARE.append(id(obj))
            return obj  # __init__ comes later, as a coroutine
    obj._charmrs_constructing = True
    try:
        init = getattr(cls, "__init__")  # noqa: B009 (mypy refuses cls.__init__)
        if getattr(init, "_charmrs_coro", False):
            # A @coro constructor runs until it first waits; the runtime drives the
            # rest (`_charmrs_ctor_glet`: the greenlet and what it waits for).
            g = greenlet(lambda: init(obj, *pickle.loads(args)))
            first = g.switch()
            if not g.dead:
                obj._charmrs_ctor_glet = (g, first)
        else:
            obj.__init__(*pickle.loads(args))
    finally:
        del obj._charmrs_constructing
    return obj




def buffers(bufs: list[Any]) -> list[Any]:
    """A pickle's out-of-band buffers (``pickle.PickleBuffer``) as numpy arrays of
    bytes, which the runtime copies into the message (numpy gives them for C- or
    Fortran-contiguous arrays only)."""
    np = sys.modules["numpy"]
    return [np.frombuffer(b.raw(), dtype=np.uint8) for b in bufs]


def pack_chare(obj: Any) -> bytes:
    """The state of a migrating chare: the object pickled (its class by name)."""
    return pickle.dumps(obj, protocol=5)


def unpack_chare(b: bytes) -> Any:
    """A migrated chare, rebuilt from ``pack_chare``'s bytes (its constructor does
    not run again)."""
    return pickle.loads(b)


def section_of(func: bytes, obj: Any) -> list[int]:
    """The sections ``obj`` belongs to by the pickled section function ``func``: a
    number or an iterable of numbers (negative: none)."""
    # Unpickled each time (a lookup by name): the program may redefine the function.
    f = pickle.loads(func)
    r = f(obj)
    if r is None:
        return []
    if isinstance(r, int):
        return [r] if r >= 0 else []
    return [int(s) for s in r if s >= 0]


def flush_pending(obj: Any) -> None:
    """Makes the contributions ``obj``'s constructor made, now that it exists."""
    from .chare import _reduce

    pending = obj.__dict__.pop("_charmrs_pending", [])
    for data, reducer, callback, section in pending:
        _reduce(obj, data, reducer, callback, section)


def _result(value: Any, ret: bool) -> Optional[bytes]:
    return pickle.dumps(value, protocol=5) if ret else None


def _decode(args: bytes, shape: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if shape == 0:
        return pickle.loads(args), {}
    if shape == 1:
        return (pickle.loads(args),), {}
    if shape == 3:
        return pickle.loads(args)  # type: ignore[no-any-return]
    return (), {}


def when_holds(obj: Any, method: str, a: tuple[Any, ...], kw: Optional[dict[str, Any]]) -> bool:
    """Whether the ``@when`` condition of ``method`` holds for these arguments."""
    return bool(getattr(type(obj), method)._charmrs_when(obj, *a, **(kw or {})))


def _call(fn: Any, args: bytes, shape: int) -> Any:
    """``fn`` with the arguments of a message; ``exit()`` in a method ends the job."""
    a, kw = _decode(args, shape)
    return _call_with(fn, a, kw)


def _call_with(fn: Any, a: tuple[Any, ...], kw: Optional[dict[str, Any]]) -> Any:
    """``fn(*a, **kw)``; ``exit()`` in a method ends the job."""
    try:
        return fn(*a, **(kw or {}))
    except SystemExit as e:
        from . import _charmrs

        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
        _charmrs.exit(code)
        return None


def invoke(obj: Any, method: str, args: bytes, shape: int, ret: bool) -> Optional[bytes]:
    """Runs ``obj.method(*args)``; its pickled result if ``ret``."""
    return _result(_call(getattr(obj, method), args, shape), ret)


class Done:
    """What a worker greenlet switches back with when its job is over (it then waits
    for the next one instead of ending): the job's return value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


#: How many finished worker greenlets each PE thread keeps for the next jobs.
_MAX_IDLE = 64

_idle = threading.local()


def _idle_workers() -> list[_Worker]:
    free: Optional[list[_Worker]] = getattr(_idle, "workers", None)
    if free is None:
        free = _idle.workers = []
    return free


class _Worker(greenlet):
    """A greenlet that runs jobs (coroutine methods, pool tasks) one after the other.

    A greenlet made and ended per job costs more than the job itself when it is small:
    CPython 3.11 gives each new greenlet a frame stack of its own, mapped from the
    kernel on its first call and unmapped when it ends (measured: ~40% of a pool of
    one-item tasks in mmap, munmap and page faults). A finished job's worker switches
    back to the scheduler with ``Done(value)`` and waits for its next job in this PE
    thread's free list. A job that raises ends its worker (the scheduler sees the
    exception, as with a plain greenlet). Each job runs in a new empty
    ``contextvars`` context, as a new greenlet would."""

    job: Optional[Callable[[], Any]] = None

    def run(self) -> Any:
        while True:
            job, self.job = self.job, None
            assert job is not None
            value = contextvars.Context().run(job)
            free = _idle_workers()
            if len(free) >= _MAX_IDLE:
                return value
            free.append(self)
            parent = self.parent
            assert parent is not None  # the PE's scheduler, which made it
            parent.switch(Done(value))


def _spawn(job: Callable[[], Any]) -> greenlet:
    """A greenlet that runs ``job`` when first switched to: an idle worker of this PE
    thread, or a new one; it ends its job by switching back ``Done(value)`` (or by
    returning the value, if the free list is full)."""
    free = _idle_workers()
    g = free.pop() if free else _Worker()
    g.job = job
    return g


def coro(obj: Any, method: str, a: tuple[Any, ...], kw: Optional[dict[str, Any]], ret: bool) -> greenlet:
    """A greenlet that runs ``obj.method(*a, **kw)`` (a ``@coro`` method; the
    arguments unpickled by the runtime, numpy arrays in their places)."""
    fn = getattr(obj, method)

    def run() -> Any:
        # Charm4py's count of the chare's running coroutines (``_numthreads``).
        obj._numthreads += 1
        try:
            return _result(_call_with(fn, a, kw), ret)
        finally:
            obj._numthreads -= 1

    return _spawn(run)


def task(func: bytes, args: bytes, chunk: bool) -> greenlet:
    """A greenlet that runs a pool task: ``func(*args)``, or with ``chunk``,
    ``[func(x) for x in args]``; it returns the pickled result."""
    # Unpickled each time (a lookup by name): the program may redefine the function.
    f = pickle.loads(func)
    a = pickle.loads(args)
    if chunk:
        return _spawn(lambda: pickle.dumps([f(x) for x in a], protocol=5))
    return _spawn(lambda: pickle.dumps(f(*a), protocol=5))


def combine(reducer: str, a: bytes, b: bytes) -> bytes:
    """Combines two pickled contributions with ``Reducer.<reducer>``."""
    from .reduction import Reducer

    fn = getattr(Reducer, reducer).func
    return pickle.dumps(fn([pickle.loads(a), pickle.loads(b)]), protocol=5)


def finish(reducer: str, data: bytes) -> bytes:
    """The reduction's result after the reducer's ``post`` step, if it has one."""
    from .reduction import Reducer

    post = getattr(Reducer, reducer).post
    return data if post is None else pickle.dumps(post(pickle.loads(data)), protocol=5)


def gather_list(items: list[bytes]) -> bytes:
    """The pickled list of gathered contributions."""
    return pickle.dumps([pickle.loads(b) for b in items], protocol=5)


def pickle_exception(exc: BaseException) -> Optional[bytes]:
    """The exception pickled, or None if it cannot be (then the caller gets a
    ``CharmError`` with the traceback text)."""
    try:
        b = pickle.dumps(exc, protocol=5)
        pickle.loads(b)
        return b
    except Exception:
        return None


def unpickle_exception(b: bytes, remote: str) -> BaseException:
    """A remote exception, to raise at the caller, with the remote report attached."""
    exc: BaseException = pickle.loads(b)
    exc.remote_traceback = remote  # type: ignore[attr-defined]
    if hasattr(exc, "add_note"):
        exc.add_note(remote)
    return exc


def main(fn: Any, args: list[str]) -> greenlet:
    """The greenlet of the program's main function."""
    return greenlet(lambda: _result(_call(fn, pickle.dumps((args,)), 0), False))
