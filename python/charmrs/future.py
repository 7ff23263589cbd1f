"""Futures: values that arrive later; ``get()`` suspends the current coroutine."""

from __future__ import annotations

import pickle
from typing import Any, Optional

from greenlet import getcurrent

from . import _charmrs
from .exceptions import CharmError
from .readonly import flush as _ro_flush
from .readonly import readonlies as _readonlies

_UNSET = object()
#: The readonlies' state (``_dirty``: changed since their last broadcast).
_ro_state = _readonlies.__dict__


def _wait(raw: Any) -> Any:
    """Suspends the current coroutine until ``raw`` (a runtime future) completes (not
    at all if it did)."""
    if _ro_state["_dirty"]:
        _ro_flush()
    v = raw.ready_value(_UNSET)
    if v is not _UNSET:
        return v
    g = getcurrent()
    if g.parent is None:
        raise CharmError(
            "this call waits for a future: make it from main or from a method decorated with @coro "
            "(plain methods cannot suspend)"
        )
    return g.parent.switch(raw)


def _wait_any(futures: list["Future"]) -> int:
    """Suspends the current coroutine until one of ``futures`` is ready; stores its
    value (or error) in it and returns its position."""
    _ro_flush()
    g = getcurrent()
    if g.parent is None:
        raise CharmError("iwait waits for futures: use it in main or a @coro method")
    i, ok, value = g.parent.switch([f._raw for f in futures])
    if ok:
        futures[i]._value = value
    else:
        futures[i]._error = value
    return i  # type: ignore[no-any-return]


class Future:
    """A value that arrives later: the result of a call made with ``ret=True`` or
    ``awaitable=True``, the target of a reduction, or an explicit ``Future()`` that any
    chare can ``send`` a value to. ``Future(num_vals=n)`` takes ``n`` values and
    ``get()`` gives them as a list, in arrival order. Only the PE that made it can
    ``get`` it."""

    __slots__ = ("_raw", "_value", "_error")

    def __init__(self, num_vals: int = 1, _raw: Optional[Any] = None) -> None:
        if not isinstance(num_vals, int) or num_vals < 1:
            raise ValueError(f"a Future takes at least one value, not num_vals={num_vals!r}")
        self._raw = _raw if _raw is not None else _charmrs.RawFuture(num_vals)
        self._value: Any = _UNSET
        self._error: Optional[BaseException] = None

    def get(self) -> Any:
        """The value: suspends the current coroutine until it arrives. An exception
        raised by the remote method is raised here with its own type (its
        ``remote_traceback`` attribute and notes hold the remote report; one that
        cannot be pickled arrives as a ``CharmError`` with the report); so is an
        exception sent as the value (``f.send(ValueError(...))``)."""
        if self._error is not None:
            raise self._error
        if self._value is _UNSET:
            try:
                value = _wait(self._raw)
            except Exception as e:
                # The remote exception (or a CharmError): raised again by later gets.
                self._error = e
                raise
            if isinstance(value, Exception):
                # As in Charm4py: a future that receives an exception raises it.
                self._error = value
                raise value
            self._value = value
        return self._value

    def _ready(self) -> bool:
        return self._value is not _UNSET or self._error is not None

    def ready(self) -> bool:
        """Whether the value (every value, for ``num_vals`` > 1) arrived: ``get()``
        would not suspend. On the PE that made the future."""
        return self._ready() or bool(self._raw.is_ready())

    def send(self, value: Any = None) -> None:
        """Sets the value of an explicit future (from any chare, on any PE)."""
        # No bytes stand for None (the common value of a completion signal).
        self._raw.send(b"" if value is None else pickle.dumps(value, protocol=5))

    def __call__(self, value: Any = None) -> None:
        """Same as ``send``: a future is a callback."""
        self.send(value)

    def __reduce__(self) -> Any:
        return (_future_from_bytes, (bytes(self._raw.to_bytes()),))


def _from_raw(raw: Any) -> Future:
    """The ``Future`` of a raw future that came from elsewhere (no checks to make)."""
    f = Future.__new__(Future)
    f._raw = raw
    f._value = _UNSET
    f._error = None
    return f


def _future_from_bytes(b: bytes) -> Future:
    return _from_raw(_charmrs.RawFuture.from_bytes(b))
