"""A Ray-style API on charmrs (Charm4py's ``charm4py.ray``): remote functions and
actors whose results are object references, fetched with ``ray.get`` from any PE.

Call ``ray.init()`` once (in ``main``) before using the rest::

    from charmrs import charm, ray

    @ray.remote
    def square(x):
        return x * x

    def main(args):
        ray.init()
        refs = [square.remote(i) for i in range(10)]
        print(sum(ray.get(refs)))
        exit()

    charm.start(main)

- ``@ray.remote`` on a function: ``f.remote(*args)`` runs ``f`` as a task of
  ``charm.pool`` (on any PE) and returns an ``ObjectRef`` at once. ``ObjectRef``
  arguments are replaced by their values before ``f`` runs (the task waits for them).
- ``@ray.remote`` on a class: ``C.remote(*args)`` creates an actor (a chare, placed
  round robin over the PEs) and returns its handle; ``handle.method.remote(*args)``
  runs the method on the actor, one call at a time in arrival order, and returns an
  ``ObjectRef``.
- ``ray.get(ref)`` (or a list of them) suspends the calling coroutine until the values
  are there; an exception raised by the task or method is raised here. ``ray.put(obj)``
  stores ``obj`` and returns its reference. ``ray.wait(refs, num_returns=1,
  timeout=None)`` returns ``(ready, not_ready)``.

Values live in a store on the PE that made the reference (``ray.init`` creates a
group of stores, one per PE); another PE fetches a value once and keeps a copy. The
stores keep every value until the job ends (Ray frees them when the last reference
goes: not done here). ``ray.put`` does not copy the object on its own PE.
"""

from __future__ import annotations

import types
from typing import Any, Callable, Optional, Sequence, Union

from .. import chare as _chare
from ..charm import charm
from . import actor
from ._store import ObjectRef, _put, _Store, _store, get_value, resolve, wait_refs

__all__ = ["ObjectRef", "actor", "get", "init", "is_initialized", "put", "remote", "shutdown", "wait"]


#: The store group, once ``init`` made it (on the PE that called it).
_GROUP: Optional[Any] = None


def init(*args: Any, **kwargs: Any) -> None:
    """Creates the object stores (one per PE). Call it once, from ``main``, before the
    rest of this module; Ray's arguments (``num_cpus`` and the like) are accepted and
    ignored: the job's PEs are the workers."""
    global _GROUP
    if _GROUP is not None:
        return
    g = _chare.Group(_Store)
    charm.awaitCreation(g)
    _GROUP = g


def is_initialized() -> bool:
    """Whether ``init`` ran (on this PE)."""
    return _GROUP is not None


def shutdown() -> None:
    """Nothing to do: the stores end with the job."""


def put(obj: Any) -> ObjectRef:
    """Stores ``obj`` and returns its reference (usable on any PE)."""
    return _put(obj)


def get(refs: Union[ObjectRef, Sequence[ObjectRef]], timeout: Optional[float] = None) -> Any:
    """The value of ``refs`` (or the list of values of a list of them): suspends the
    calling coroutine until they are there. The exception of a failed task is raised
    here."""
    if timeout is not None:
        ready, _ = wait_refs([refs] if isinstance(refs, ObjectRef) else list(refs), None, timeout)
        want = 1 if isinstance(refs, ObjectRef) else len(list(refs))
        if len(ready) < want:
            raise TimeoutError(f"ray.get: not ready after {timeout} s")
    if isinstance(refs, ObjectRef):
        return get_value(refs)
    if isinstance(refs, (list, tuple)):
        return [get_value(r) for r in refs]
    raise TypeError(f"ray.get takes an ObjectRef or a list of them, not {refs!r}")


def wait(
    refs: Sequence[ObjectRef], num_returns: int = 1, timeout: Optional[float] = None, fetch_local: bool = True
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """``(ready, not_ready)``: waits until ``num_returns`` of ``refs`` have their values
    here, or ``timeout`` seconds passed; both lists keep the order of ``refs``."""
    refs = list(refs)
    if not all(isinstance(r, ObjectRef) for r in refs):
        raise TypeError("ray.wait takes a list of ObjectRefs")
    if not 0 <= num_returns <= len(refs):
        raise ValueError(f"ray.wait: num_returns={num_returns} for {len(refs)} references")
    return wait_refs(refs, num_returns, timeout)


def _run_task(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], owner: int, oid: int) -> None:
    """A remote function's pool task: its arguments' values, the call, the result (or
    the exception) to the reference's store."""
    try:
        a, kw = resolve(args, kwargs)
        value, ok = func(*a, **kw), True
    except Exception as e:  # noqa: BLE001 (the task's failure is its result)
        value, ok = e, False
    _store()._send_result(owner, oid, ok, value)


def _remote_function(func: types.FunctionType) -> types.FunctionType:
    def remote(*args: Any, **kwargs: Any) -> ObjectRef:
        ref = _store()._new_ref()
        charm.pool.Task(_run_task, (func, args, kwargs, ref.owner, ref.id))
        return ref

    remote.__doc__ = f"Runs {func.__qualname__} as a task; returns the reference of its result."
    # The function stays itself (tasks send it by name), with a ``remote`` attribute.
    func.remote = remote  # type: ignore[attr-defined]
    return func


def remote(*args: Any, **kwargs: Any) -> Any:
    """``@ray.remote`` on a function or a class (see the module doc); also
    ``@ray.remote(num_cpus=...)``: resource options are accepted and ignored, and
    ``num_returns`` other than 1 is refused."""
    if kwargs.get("num_returns", 1) != 1:
        raise NotImplementedError("ray.remote: num_returns other than 1 is not supported by charmrs")
    if len(args) == 1 and not kwargs and (isinstance(args[0], (types.FunctionType, type))):
        target = args[0]
        if isinstance(target, type):
            return actor.ActorClass(target)
        return _remote_function(target)
    if args:
        raise TypeError(f"@ray.remote decorates a function or a class, not {args[0]!r}")
    return remote
