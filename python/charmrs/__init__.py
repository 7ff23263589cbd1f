"""charmrs: the Charm4py programming model on a Rust runtime.

Work in progress (issue 5): ``charm.start``, ``charm.myPe``, ``charm.numPes``,
``charm.exit``, ``Chare``, ``Group``, ``Array`` and one-sided calls on proxies.
Importing the package starts nothing.
"""

from .charm import charm
from .chare import Array, Chare, Group

__all__ = ["Array", "Chare", "Group", "charm"]
