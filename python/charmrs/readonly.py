"""``readonlies``: values set on PE 0 (in the entry point) that every PE can read.

Charm4py's ``from charm4py import readonlies as ro``; ``ro.X = value`` on PE 0, then
``ro.X`` anywhere. Changed values are broadcast to every PE before the next message PE 0
sends (a creation, a call) and before PE 0 first suspends, so that what PE 0 set before
creating or calling a chare is there when that chare runs.
"""

from __future__ import annotations

import pickle
from typing import Any

from . import _charmrs


class _Readonlies:
    """The ``readonlies`` object: set attributes on PE 0, read them anywhere."""

    def __init__(self) -> None:
        object.__setattr__(self, "_dirty", False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        object.__setattr__(self, "_dirty", True)
        _charmrs.set_ro_dirty(True)  # calls go through Python, which flushes first

    def _values(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_dirty"}

    def _set(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


readonlies = _Readonlies()


def flush() -> None:
    """Broadcasts the readonlies if PE 0 changed them since the last broadcast."""
    if not readonlies.__dict__["_dirty"]:
        return
    from .charm import charm

    if charm.thisProxy is None:
        return  # the runtime group does not exist yet; flushed once it does
    object.__setattr__(readonlies, "_dirty", False)
    _charmrs.set_ro_dirty(False)
    payload = pickle.dumps((readonlies._values(),), 5)
    charm.thisProxy._raw.send("_set_readonlies", payload, False, 0)
