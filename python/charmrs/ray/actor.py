"""Actors of ``charmrs.ray``: ``@ray.remote`` on a class."""

from __future__ import annotations

import collections
import pickle
from typing import Any, Optional

from ..charm import charm
from ..chare import Chare, coro
from ..future import Future
from ._store import ObjectRef, _store, resolve

#: The PE of the next actor this process creates (round robin).
_next_pe = 0


class _Actor(Chare):
    """What every actor chare adds to its class: calls run one at a time, in order."""

    _ray_busy = False
    _ray_waiters: Optional[collections.deque[Future]] = None

    @coro
    def _ray_call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], owner: int, oid: int) -> None:
        if self._ray_busy:
            if self._ray_waiters is None:
                self._ray_waiters = collections.deque()
            turn = Future()
            self._ray_waiters.append(turn)
            turn.get()
        self._ray_busy = True
        try:
            try:
                a, kw = resolve(args, kwargs)
                value, ok = getattr(self, name)(*a, **kw), True
            except Exception as e:  # noqa: BLE001 (the method's failure is its result)
                value, ok = e, False
            _store()._send_result(owner, oid, ok, value)
        finally:
            if self._ray_waiters:
                self._ray_waiters.popleft().send(None)
            else:
                self._ray_busy = False


class ActorMethod:
    """``handle.method``: ``.remote(*args)`` calls it on the actor."""

    __slots__ = ("_proxy", "_name")

    def __init__(self, proxy: Any, name: str) -> None:
        self._proxy = proxy
        self._name = name

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef:
        """Calls the method on the actor; returns the reference of its result."""
        ref = _store()._new_ref()
        payload = pickle.dumps((self._name, args, kwargs, ref.owner, ref.id), protocol=5)
        self._proxy._raw.elem([0]).send("_ray_call", payload, True, 0)
        return ref

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor methods are called with .remote(): {self._name}.remote(...)")


class ActorHandle:
    """An actor: ``handle.method.remote(*args)``. It can be passed to other tasks and
    actors."""

    __slots__ = ("_proxy",)

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return ActorMethod(self._proxy, name)

    def __reduce__(self) -> Any:
        return (ActorHandle, (self._proxy,))

    def __repr__(self) -> str:
        return f"<actor {self._proxy._cls.__qualname__}>"


class ActorClass:
    """``@ray.remote`` on a class: ``.remote(*args)`` creates an actor."""

    def __init__(self, cls: type) -> None:
        self._cls = cls
        # The chare class: the user's class first (its methods win), found by the
        # runtime as ``<module>:<qualname>._chare``.
        ns: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}._chare"}
        self._chare = type(cls.__name__, (cls, _Actor), ns)
        self.__doc__ = cls.__doc__

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Creates the actor (its constructor gets ``args``) on the next PE, round
        robin; returns its handle at once."""
        global _next_pe
        if kwargs:
            raise TypeError("actor constructors take positional arguments here")
        pe = _next_pe % charm.numPes()
        _next_pe += 1
        return ActorHandle(Chare(self._chare, args=list(args), onPE=pe))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actors are created with .remote(): {self._cls.__name__}.remote(...)")
