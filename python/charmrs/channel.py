"""Channels: ordered streams between two chares (Charm4py's ``Channel``)."""

from __future__ import annotations

import collections
from typing import Any, Optional

from .future import Future


class Channel:
    """``Channel(chare, remote)``: a stream between ``chare`` (this chare object) and
    the chare that proxy ``remote`` names, which makes the matching
    ``Channel(itself, remote=<proxy of this chare>)``. The k-th channel a chare opens to
    a remote pairs with the k-th channel the remote opens back. ``send(*args)`` never
    waits; ``recv()`` returns the next arguments in order, suspending the coroutine
    until they arrive (use it in a ``@coro`` method). ``local``, if given, is the proxy
    of ``chare`` itself (Charm4py's optional explicit local endpoint)."""

    __slots__ = ("_chare", "_remote", "_key", "_their_key", "_queue", "_waiter", "_next_out", "_next_in", "_early")

    def __init__(self, chare: Any, remote: Any, local: Any = None) -> None:
        from .chare import Proxy

        if not isinstance(remote, Proxy):
            raise TypeError("Channel(chare, remote): remote is a proxy of one chare")
        if local is not None and local != chare.thisProxy[chare.thisIndex]:
            raise ValueError("Channel(chare, remote, local): local is the proxy of chare itself")
        me = chare._elem()
        mine, theirs = bytes(me.to_bytes()), bytes(remote._raw.to_bytes())
        counts = chare.__dict__.setdefault("_charmrs_channel_counts", {})
        k = counts.get(theirs, 0)
        counts[theirs] = k + 1
        self._chare = chare
        self._remote = remote
        # Each side names the channel by (sender, k) as the receiver sees it.
        self._key = (theirs, k)  # what arrives here from the remote
        self._their_key = (mine, k)  # what the remote files our messages under
        self._queue: collections.deque[Any] = collections.deque()
        self._waiter: Optional[Future] = None
        self._next_out = 0
        self._next_in = 0
        self._early: dict[int, Any] = {}
        chans = chare.__dict__.setdefault("_charmrs_channels", {})
        chans[self._key] = self
        # Messages that came before this side opened the channel.
        for seq, payload in chare.__dict__.get("_charmrs_channel_early", {}).pop(self._key, {}).items():
            self._arrive(seq, payload)

    @property
    def remote(self) -> Any:
        """The proxy of the chare at the other end."""
        return self._remote

    def send(self, *args: Any) -> None:
        """Sends ``args`` to the remote chare; it receives them from its ``recv()``, in
        the order they were sent. They travel as the arguments of a remote method call
        do: copied (numpy arrays as raw bytes beside the pickle), or by reference to a
        chare of the same process with ``charm.options.local_msg_optim`` on."""
        seq = self._next_out
        self._next_out += 1
        _channel_msg().__get__(self._remote, None)(self._their_key, seq, *args)

    def recv(self) -> Any:
        """The next arguments sent by the remote (one value if it sent one)."""
        while not self._queue:
            self._waiter = Future()
            self._waiter.get()
        args = self._queue.popleft()
        return args[0] if len(args) == 1 else args

    def _arrive(self, seq: int, args: tuple[Any, ...]) -> None:
        self._early[seq] = args
        while self._next_in in self._early:
            self._queue.append(self._early.pop(self._next_in))
            self._next_in += 1
        if self._queue and self._waiter is not None:
            w, self._waiter = self._waiter, None
            w.send(None)

    def _ready(self) -> bool:
        return bool(self._queue)

    def _wait_future(self) -> Future:
        if self._waiter is None:
            self._waiter = Future()
        return self._waiter


def _deliver(chare: Any, key: tuple[bytes, int], seq: int, args: tuple[Any, ...]) -> None:
    """A channel message arrived at ``chare``."""
    ch = chare.__dict__.get("_charmrs_channels", {}).get(key)
    if ch is None:
        early = chare.__dict__.setdefault("_charmrs_channel_early", {})
        early.setdefault(key, {})[seq] = args
    else:
        ch._arrive(seq, args)


_CHANNEL_MSG: Any = None


def _channel_msg() -> Any:
    """The entry method that carries channel messages (made once)."""
    global _CHANNEL_MSG
    if _CHANNEL_MSG is None:
        from .chare import _entry

        _CHANNEL_MSG = _entry("_charmrs_channel_msg", False, False)
    return _CHANNEL_MSG
