"""Chares, groups, arrays and their proxies."""

from __future__ import annotations

import pickle
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

from . import _charmrs
from .future import Future

F = TypeVar("F", bound=Callable[..., Any])


def coro(fn: F) -> F:
    """Marks a chare method as a coroutine: it may suspend (``Future.get()``,
    ``charm.awaitCreation``) while the PE runs other work."""
    fn._charmrs_coro = True  # type: ignore[attr-defined]
    return fn


#: Charm4py's older name for ``coro``.
threaded = coro


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Proxy:
    """A proxy: calling a method on it sends the call to every element of the
    collection, or to one element (``proxy[i]``). Keyword arguments ``ret=True`` (the
    return value, a list for a broadcast) and ``awaitable=True`` (completion) make the
    call return a ``Future``."""

    __slots__ = ("_raw", "_cls", "_created")

    def __init__(self, raw: Any, cls: type, created: Optional[Future] = None) -> None:
        self._raw = raw
        self._cls = cls
        self._created = created

    def __getitem__(self, index: Union[int, Sequence[int]]) -> "Proxy":
        idx = [index] if isinstance(index, int) else list(index)
        return Proxy(self._raw.elem(idx), self._cls)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._cls, name, None)
        if name.startswith("_") or not callable(method):
            raise AttributeError(f"{self._cls.__qualname__} has no entry method {name!r}")
        raw = self._raw
        is_coro = bool(getattr(method, "_charmrs_coro", False))

        def call(*args: Any, ret: bool = False, awaitable: bool = False) -> Optional[Future]:
            want = 2 if ret else 1 if awaitable else 0
            fut = raw.send(name, pickle.dumps(args, protocol=5), is_coro, want)
            return None if fut is None else Future(fut)

        call.__name__ = name
        return call

    def __reduce__(self) -> Any:
        return (_proxy_from_bytes, (bytes(self._raw.to_bytes()), _path(self._cls)))

    def __repr__(self) -> str:
        return f"<proxy of {self._cls.__qualname__}>"


def _proxy_from_bytes(b: bytes, path: str) -> Proxy:
    from ._glue import _class

    return Proxy(_charmrs.Proxy.from_bytes(b), _class(path))


class Chare:
    """Base class of chares: objects whose methods other chares call by message.

    ``Chare(C, args=[...], onPE=p)`` creates one chare of class ``C`` on PE ``p`` (any
    PE if ``onPE`` is -1) and returns its proxy."""

    thisIndex: Any
    thisProxy: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Chare and args and isinstance(args[0], type) and issubclass(args[0], Chare):
            return _create_single(args[0], *args[1:], **kwargs)
        return super().__new__(cls)


def _create_single(cls: type, args: Sequence[Any] = (), onPE: int = -1) -> Proxy:  # noqa: N803
    raw, created = _charmrs.create_single(_path(cls), onPE, pickle.dumps(tuple(args), protocol=5))
    return Proxy(raw, cls, Future(created))


def Group(cls: type, args: Sequence[Any] = ()) -> Proxy:  # noqa: N802 (Charm4py's name)
    """Creates one element of ``cls`` on every PE; returns the group's proxy at once."""
    raw, created = _charmrs.create_group(_path(cls), pickle.dumps(tuple(args), protocol=5))
    return Proxy(raw, cls, Future(created))


def Array(cls: type, dims: Union[int, Sequence[int]], args: Sequence[Any] = ()) -> Proxy:  # noqa: N802
    """Creates an array of ``cls`` elements of shape ``dims``; returns its proxy at once."""
    shape = [dims] if isinstance(dims, int) else list(dims)
    raw, created = _charmrs.create_array(_path(cls), shape, pickle.dumps(tuple(args), protocol=5))
    return Proxy(raw, cls, Future(created))
