"""Chares, groups, arrays and their proxies."""

from __future__ import annotations

import pickle
from typing import Any, Sequence, Union

from . import _charmrs


class Chare:
    """Base class of chares: objects whose methods other chares call by message."""

    thisIndex: Any
    thisProxy: Any


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class _CollectionProxy:
    """A proxy: calling a method sends it (to every element, or to one: ``proxy[i]``)."""

    def __init__(self, raw: Any, cls: type) -> None:
        self._raw = raw
        self._cls = cls

    def __getitem__(self, index: Union[int, Sequence[int]]) -> "_CollectionProxy":
        idx = [index] if isinstance(index, int) else list(index)
        return _CollectionProxy(self._raw.elem(idx), self._cls)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not callable(getattr(self._cls, name, None)):
            raise AttributeError(f"{self._cls.__qualname__} has no entry method {name!r}")
        raw = self._raw

        def call(*args: Any) -> None:
            raw.send(name, pickle.dumps(args, protocol=5))

        return call

    def __reduce__(self) -> Any:
        return (_CollectionProxy, (self._raw, self._cls))


def Group(cls: type, args: Sequence[Any] = ()) -> _CollectionProxy:  # noqa: N802 (Charm4py's name)
    """Creates one element of ``cls`` on every PE; returns the group's proxy."""
    return _CollectionProxy(_charmrs.create_group(_path(cls), pickle.dumps(tuple(args), protocol=5)), cls)


def Array(cls: type, dims: Union[int, Sequence[int]], args: Sequence[Any] = ()) -> _CollectionProxy:  # noqa: N802
    """Creates an array of ``cls`` elements of shape ``dims``; returns its proxy."""
    shape = [dims] if isinstance(dims, int) else list(dims)
    raw = _charmrs.create_array(_path(cls), shape, pickle.dumps(tuple(args), protocol=5))
    return _CollectionProxy(raw, cls)
