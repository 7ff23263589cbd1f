"""Called by the native module: builds chares and runs their methods (private)."""

from __future__ import annotations

import importlib
import pickle
import sys
from typing import Any, Optional

from greenlet import greenlet


def _class(path: str) -> type:
    module, _, qualname = path.partition(":")
    mod = sys.modules.get(module) or importlib.import_module(module)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def construct(path: str, args: bytes, index: list[int], proxy: Any) -> Any:
    """Makes the element ``index`` of a collection of class ``path``."""
    from .chare import Proxy

    cls = _class(path)
    obj = object.__new__(cls)
    obj.thisIndex = tuple(index) if len(index) > 1 else index[0]
    obj.thisProxy = Proxy(proxy, cls)
    obj.__init__(*pickle.loads(args))
    return obj


def _result(value: Any, ret: bool) -> Optional[bytes]:
    return pickle.dumps(value, protocol=5) if ret else None


def invoke(obj: Any, method: str, args: bytes, ret: bool) -> Optional[bytes]:
    """Runs ``obj.method(*args)``; its pickled result if ``ret``."""
    return _result(getattr(obj, method)(*pickle.loads(args)), ret)


def coro(obj: Any, method: str, args: bytes, ret: bool) -> greenlet:
    """A greenlet that runs ``obj.method(*args)`` (a ``@coro`` method)."""
    fn = getattr(obj, method)
    return greenlet(lambda: _result(fn(*pickle.loads(args)), ret))


def main(fn: Any, args: list[str]) -> greenlet:
    """The greenlet of the program's main function."""
    return greenlet(lambda: _result(fn(args), False))
