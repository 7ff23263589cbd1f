"""charmrs: the Charm4py programming model on a Rust runtime.

The manual's API: ``charm`` (start, exit, topology, wait/iwait/sleep, quiescence
detection, ``charm.split``/``charm.combine`` sections, ``charm.pool``), ``Chare``,
``Group``, ``Array`` (dense N-d, or sparse with ``ckInsert``; ``ArrayMap``), proxies
with ``ret=True`` / ``awaitable=True``, ``Future``, ``@coro``, ``@when``, reductions
(``contribute``, ``reduce``, ``allreduce``, ``Reducer`` with custom reducers),
``Channel`` and ``readonlies``; ``wait`` reads ``@when`` conditions; ``ray`` is a Ray-style API (remote functions,
actors, object references). Importing the package starts nothing.
"""

from .charm import Options, charm
from .channel import Channel
from .chare import Array, ArrayMap, Chare, Group, coro, register, threaded, when
from .exceptions import Charm4PyError, Charm4pyError, CharmError
from .future import Future
from .readonly import readonlies
from . import ray, threads, wait
from .reduction import Reducer

__all__ = [
    "Array",
    "ArrayMap",
    "Channel",
    "Chare",
    "Charm4PyError",
    "Charm4pyError",
    "CharmError",
    "Future",
    "Group",
    "Options",
    "Reducer",
    "charm",
    "coro",
    "ray",
    "readonlies",
    "register",
    "threaded",
    "threads",
    "wait",
    "when",
]
