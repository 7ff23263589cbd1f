"""Reducers: how the contributions of a reduction combine (Charm4py's ``Reducer``)."""

from __future__ import annotations

import array
import operator
from typing import Any, Callable, Optional

ReduceFn = Callable[[list[Any]], Any]


class _Reducer:
    """A reducer, as passed to ``contribute``/``reduce``/``allreduce``."""

    __slots__ = ("name", "func", "pre", "post")

    def __init__(
        self,
        name: str,
        func: Optional[ReduceFn],
        pre: Optional[Callable[[Any, Any], Any]] = None,
        post: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        self.name = name
        self.func = func
        self.pre = pre
        self.post = post

    def __repr__(self) -> str:
        return f"<Reducer.{self.name}>"

    def __reduce__(self) -> Any:
        return (_by_name, (self.name,))


#: The element types Charm4py reduces element by element in a list or tuple.
_BASIC = (int, float, bool)


def _uniform(v: Any) -> bool:
    """Whether every element of list or tuple ``v`` has one and the same basic type."""
    t = type(v[0]) if len(v) else int
    return t in _BASIC and all(type(x) is t for x in v)


def _pairwise(op: Callable[[Any, Any], Any], whole_if_mixed: bool = False) -> ReduceFn:
    """Folds contributions with ``op``: numbers and numpy arrays directly (numpy
    broadcasts), lists and tuples element by element. With ``whole_if_mixed`` (``max``,
    ``min``), a list or tuple whose elements are not all of one basic type (``int``,
    ``float``, ``bool``) is compared whole, as Charm4py does: ``(value, index)`` pairs
    reduce to the pair with the largest value (the argmax idiom)."""

    def two(a: Any, b: Any) -> Any:
        if isinstance(a, (list, tuple, array.array)) and isinstance(b, (list, tuple, array.array)):
            if whole_if_mixed and not isinstance(a, array.array) and not (_uniform(a) and _uniform(b)):
                return op(a, b)
            if len(a) != len(b):
                raise ValueError(f"contributions of different lengths ({len(a)} and {len(b)}) cannot be combined")
            if isinstance(a, array.array):
                return array.array(a.typecode, (op(x, y) for x, y in zip(a, b)))
            return type(a)(two(x, y) for x, y in zip(a, b))
        return op(a, b)

    def fold(contribs: list[Any]) -> Any:
        it = iter(contribs)
        acc = next(it)
        for c in it:
            acc = two(acc, c)
        return acc

    return fold


def _np_or(name: str, fallback: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """numpy's element-wise ``name`` for arrays, ``fallback`` for plain values."""

    def op(a: Any, b: Any) -> Any:
        if hasattr(a, "__array__") or hasattr(b, "__array__"):
            import numpy

            return getattr(numpy, name)(a, b)
        return fallback(a, b)

    return op


class _ReducerRegistry:
    """Charm4py's ``Reducer``: the built-in reducers as attributes, and ``addReducer``."""

    def __init__(self) -> None:
        self._all: dict[str, _Reducer] = {}
        for name, op, whole in [
            ("sum", operator.add, False),
            ("product", operator.mul, False),
            ("max", _np_or("maximum", max), True),
            ("min", _np_or("minimum", min), True),
            ("logical_and", _np_or("logical_and", lambda a, b: bool(a) and bool(b)), False),
            ("logical_or", _np_or("logical_or", lambda a, b: bool(a) or bool(b)), False),
            ("logical_xor", _np_or("logical_xor", lambda a, b: bool(a) != bool(b)), False),
        ]:
            self._all[name] = _Reducer(name, _pairwise(op, whole))
        self._all["gather"] = _Reducer("gather", None)
        # Charm4py's name for the empty reduction (contribute with no data).
        self._all["nop"] = _Reducer("nop", None)
        # Attributes of the instance, so ``Reducer.sum`` is a plain dict lookup: a
        # failed lookup that falls back to ``__getattr__`` builds an AttributeError
        # first (~0.8 us, most of a small contribution's cost).
        self.__dict__.update(self._all)

    def addReducer(  # noqa: N802 (Charm4py's name)
        self,
        func: ReduceFn,
        pre: Optional[Callable[[Any, Any], Any]] = None,
        post: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        """Registers ``func`` (which takes a list of contributions and returns their
        reduction) as ``Reducer.<func.__name__>``. ``pre(data, chare)`` transforms each
        contribution, ``post(result)`` the final result. Register it in every process
        (at import time of the program), before it is used."""
        self._all[func.__name__] = self.__dict__[func.__name__] = _Reducer(func.__name__, func, pre, post)

    def __getattr__(self, name: str) -> _Reducer:
        # Only names that are not (yet) reducers get here.
        try:
            return self._all[name]
        except KeyError:
            raise AttributeError(f"no reducer {name!r} (register it with Reducer.addReducer)") from None


Reducer = _ReducerRegistry()


def _by_name(name: str) -> _Reducer:
    return getattr(Reducer, name)  # type: ignore[no-any-return]
