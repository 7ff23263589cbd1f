"""Called by the native module: builds chares and runs their methods (private)."""

from __future__ import annotations

import importlib
import pickle
import sys
from typing import Any


def _class(path: str) -> type:
    module, _, qualname = path.partition(":")
    mod = sys.modules.get(module) or importlib.import_module(module)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def construct(path: str, args: bytes, index: list[int], proxy: Any) -> Any:
    """Makes the element ``index`` of a collection of class ``path``."""
    from .chare import _CollectionProxy

    cls = _class(path)
    obj = cls.__new__(cls)
    obj.thisIndex = tuple(index) if len(index) > 1 else index[0]
    obj.thisProxy = _CollectionProxy(proxy, cls)
    obj.__init__(*pickle.loads(args))
    return obj


def invoke(obj: Any, method: str, args: bytes) -> None:
    """Runs ``obj.method(*args)``."""
    getattr(obj, method)(*pickle.loads(args))
