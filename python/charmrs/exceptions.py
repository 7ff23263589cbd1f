"""The exceptions of charmrs (defined once, in the native module)."""

from ._charmrs import CharmError

#: Charm4py's name for the same exception.
Charm4PyError = CharmError

__all__ = ["Charm4PyError", "CharmError"]
