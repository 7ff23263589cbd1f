"""Charm4py's ``charm4py.threads`` module name: ``threads.Future`` is ``Future``."""

from .future import Future

__all__ = ["Future"]
