"""charmrs: the Charm4py programming model on a Rust runtime.

Work in progress (issue 5): ``charm.start``, ``charm.myPe``, ``charm.numPes``,
``charm.exit``, ``charm.awaitCreation``, ``Chare`` (base class and ``Chare(C,
onPE=p)``), ``Group``, ``Array``, proxies with ``ret=True`` / ``awaitable=True``,
``Future``, ``@coro``, reductions (``contribute``, ``reduce``, ``allreduce``,
``Reducer`` with custom reducers). Importing the package starts nothing.
"""

from .charm import Options, charm
from .channel import Channel
from .chare import Array, Chare, Group, coro, threaded, when
from .exceptions import Charm4PyError, CharmError
from .future import Future
from .readonly import readonlies
from . import threads
from .reduction import Reducer

__all__ = ["Array", "Channel", "Chare", "Charm4PyError", "CharmError", "Future", "Group", "Options", "Reducer", "charm", "coro", "readonlies", "threaded", "threads", "when"]
