"""The exceptions of charmrs (defined once, in the native module)."""

from ._charmrs import CharmError

#: Charm4py's name for the same exception.
Charm4PyError = CharmError
#: The manual's spelling of the same name.
Charm4pyError = CharmError

__all__ = ["Charm4PyError", "Charm4pyError", "CharmError"]
