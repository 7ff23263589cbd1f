"""``charm.pool``: a pool of tasks shared by every process of the job.

Tasks are Python functions (pickled by name: module-level functions) with their
arguments; any PE runs them when it has nothing else to do. The runtime schedules
them by work stealing (each PE has a deque; idle PEs of a process steal from the
others, idle processes ask other processes), so every PE works, PE 0 included. A task
runs as a coroutine: it may wait, for instance for the tasks it submits itself
(nested parallelism), while its PE runs other tasks.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any, Callable, Iterable, Optional, Union

from . import _charmrs
from .future import Future


def _dumps_func(func: Callable[..., Any]) -> bytes:
    if not callable(func):
        raise TypeError(f"a pool task is a function, not {func!r}")
    try:
        return pickle.dumps(func, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        raise TypeError(
            f"pool task function {func!r} must be a module-level function: it is sent by name to the PE that runs it ({e})"
        ) from None


def _apply(pair: tuple[Callable[..., Any], Any]) -> Any:
    """``func(arg)`` for a ``(func, arg)`` pair of ``submit``."""
    func, arg = pair
    return func(arg)


class _MapFuture(Future):
    """The future of a ``map_async``: its value is the flat list of results."""

    __slots__ = ()

    def get(self) -> Any:
        """The list of results, in order (raises the first task failure)."""
        chunks = super().get()
        return [x for chunk in chunks for x in chunk]


class Pool:
    """The task pool of the job (``charm.pool``)."""

    def _chunks(self, iterable: Iterable[Any], chunksize: int) -> list[bytes]:
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
        items = list(iterable)
        return [pickle.dumps(items[i : i + chunksize], protocol=5) for i in range(0, len(items), chunksize)]

    def _ncores(self, ncores: int) -> int:
        n = _charmrs.num_pes()
        if ncores > n:
            warnings.warn(f"charm.pool: ncores={ncores} is more than the job's {n} PEs; using {n}", stacklevel=3)
            return n
        return ncores

    def map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        ncores: int = -1,
        multi_future: bool = False,
    ) -> Union[Future, list[Future]]:
        """Applies ``func`` to every item of ``iterable`` in parallel, ``chunksize`` items
        per task, on at most ``ncores`` PEs at once (all if negative); returns a
        ``Future`` of the list of results at once. With ``multi_future=True``, one
        ``Future`` per item instead."""
        f = _dumps_func(func)
        if multi_future:
            return [self.Task(func, (x,), ret=True) for x in iterable]  # type: ignore[misc]
        raw = _charmrs.pool_map(f, self._chunks(iterable, chunksize), self._ncores(ncores))
        return _MapFuture(_raw=raw)

    def map(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1, ncores: int = -1) -> list[Any]:
        """Applies ``func`` to every item of ``iterable`` in parallel and returns the
        list of results in order (suspends the calling coroutine until then; the first
        exception raised by a task is raised here)."""
        fut = self.map_async(func, iterable, chunksize, ncores)
        assert isinstance(fut, Future)
        return fut.get()  # type: ignore[no-any-return]

    def Task(  # noqa: N802 (Charm4py's name)
        self, func: Callable[..., Any], args: Iterable[Any] = (), ret: bool = False, awaitable: bool = False
    ) -> Optional[Future]:
        """Runs ``func(*args)`` as one task. Returns nothing, or with ``ret=True`` a
        ``Future`` of its return value, with ``awaitable=True`` a ``Future`` of its
        completion. A task nobody waits for that raises ends the job."""
        want = 2 if ret else 1 if awaitable else 0
        raw = _charmrs.pool_submit(_dumps_func(func), pickle.dumps(tuple(args), protocol=5), want)
        return None if raw is None else Future(_raw=raw)

    def submit_async(
        self,
        tasks: Iterable[tuple[Callable[..., Any], Any]],
        chunksize: int = 1,
        ncores: int = -1,
        multi_future: bool = False,
    ) -> Union[Future, list[Future]]:
        """Runs ``func(arg)`` for each ``(func, arg)`` pair of ``tasks`` (different
        functions allowed), ``chunksize`` pairs per task; returns a ``Future`` of the
        list of results, in order (with ``multi_future=True``, one per task)."""
        pairs = list(tasks)
        if multi_future:
            return [self.Task(func, (arg,), ret=True) for func, arg in pairs]  # type: ignore[misc]
        for func, _ in pairs:
            _dumps_func(func)
        raw = _charmrs.pool_map(_dumps_func(_apply), self._chunks(pairs, chunksize), self._ncores(ncores))
        return _MapFuture(_raw=raw)

    def submit(self, tasks: Iterable[tuple[Callable[..., Any], Any]], chunksize: int = 1, ncores: int = -1) -> list[Any]:
        """Runs ``func(arg)`` for each ``(func, arg)`` pair of ``tasks`` in parallel and
        returns the results in order (suspends the calling coroutine until then)."""
        fut = self.submit_async(tasks, chunksize, ncores)
        assert isinstance(fut, Future)
        return fut.get()  # type: ignore[no-any-return]


pool = Pool()
