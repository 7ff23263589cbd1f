"""The object stores of ``charmrs.ray``: one chare per PE (a group) that keeps the
values of the references made there, answers other PEs' requests for them, and keeps
copies of the values it fetched."""

from __future__ import annotations

import pickle
import traceback
from typing import Any, Optional, Sequence

from ..charm import charm
from ..chare import Chare
from ..exceptions import CharmError
from ..future import Future

#: The store of each PE of this process (PEs of one process share the module).
_STORES: dict[int, "_Store"] = {}


class ObjectRef:
    """The reference of a value in the object store: made by ``ray.put`` and by
    ``.remote()`` calls; ``ray.get`` gives the value, on any PE."""

    __slots__ = ("owner", "id")

    def __init__(self, owner: int, id: int) -> None:  # noqa: A002 (Ray's name)
        self.owner = owner
        self.id = id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and (self.owner, self.id) == (other.owner, other.id)

    def __hash__(self) -> int:
        return hash((self.owner, self.id))

    def __repr__(self) -> str:
        return f"ObjectRef({self.owner}, {self.id})"

    def __reduce__(self) -> Any:
        return (ObjectRef, (self.owner, self.id))


def _store() -> "_Store":
    st = _STORES.get(charm.myPe())
    if st is None:
        raise CharmError("charmrs.ray: call ray.init() first (once, in main)")
    return st


def _portable(ok: bool, value: Any) -> Any:
    """A failure's exception as it can travel: itself if it pickles, else a
    ``CharmError`` with its report."""
    if ok:
        return value
    try:
        pickle.dumps(value, protocol=5)
        return value
    except Exception:  # noqa: BLE001 (any pickling failure)
        report = "".join(traceback.format_exception(type(value), value, value.__traceback__))
        return CharmError(f"a remote task raised an exception that cannot be pickled:\n{report}")


class _Store(Chare):
    """The object store of one PE."""

    def __init__(self) -> None:
        #: ``(owner PE, id)`` to ``(ok, value)``: this PE's values and fetched copies.
        self.values: dict[tuple[int, int], tuple[bool, Any]] = {}
        #: Local coroutines waiting for a value, by key.
        self.waiting: dict[tuple[int, int], list[Future]] = {}
        #: PEs that asked for one of this PE's values before it was there, by id.
        self.asked: dict[int, list[int]] = {}
        #: Values requested from other PEs (each once).
        self.requested: set[tuple[int, int]] = set()
        self.next_id = 0
        _STORES[charm.myPe()] = self

    # Entry methods (called by other PEs' stores).

    def put(self, oid: int, ok: bool, value: Any) -> None:
        """The result of reference ``oid`` of this PE."""
        me = charm.myPe()
        self._arrived((me, oid), ok, value)
        for pe in self.asked.pop(oid, ()):
            self.thisProxy[pe].deliver(me, oid, ok, value)

    def fetch_for(self, oid: int, pe: int) -> None:
        """PE ``pe`` wants the value of reference ``oid`` of this PE (now or once there)."""
        have = self.values.get((charm.myPe(), oid))
        if have is None:
            self.asked.setdefault(oid, []).append(pe)
        else:
            self.thisProxy[pe].deliver(charm.myPe(), oid, have[0], have[1])

    def deliver(self, owner: int, oid: int, ok: bool, value: Any) -> None:
        """A value fetched from PE ``owner``."""
        self._arrived((owner, oid), ok, value)

    # Local use.

    def _arrived(self, key: tuple[int, int], ok: bool, value: Any) -> None:
        self.values[key] = (ok, value)
        for f in self.waiting.pop(key, ()):
            f.send(None)

    def _new_ref(self) -> ObjectRef:
        self.next_id += 1
        return ObjectRef(charm.myPe(), self.next_id)

    def _send_result(self, owner: int, oid: int, ok: bool, value: Any) -> None:
        if owner == charm.myPe():
            self.put(oid, ok, value)
        else:
            self.thisProxy[owner].put(oid, ok, _portable(ok, value))

    def _arrival(self, key: tuple[int, int]) -> Optional[Future]:
        """``None`` if the value of ``key`` is here, else a future of its arrival (the
        value is requested from its PE the first time)."""
        if key in self.values:
            return None
        me = charm.myPe()
        if key[0] != me and key not in self.requested:
            self.requested.add(key)
            self.thisProxy[key[0]].fetch_for(key[1], me)
        f = Future()
        self.waiting.setdefault(key, []).append(f)
        return f


def _put(obj: Any) -> ObjectRef:
    st = _store()
    ref = st._new_ref()
    st.put(ref.id, True, obj)
    return ref


def get_value(ref: ObjectRef) -> Any:
    """The value of ``ref`` (waits for it); raises the exception of a failed task."""
    st = _store()
    key = (ref.owner, ref.id)
    f = st._arrival(key)
    if f is not None:
        f.get()
    ok, value = st.values[key]
    if not ok:
        raise value
    return value


def resolve(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments with each ``ObjectRef`` among them replaced by its value."""
    a = [get_value(x) if isinstance(x, ObjectRef) else x for x in args]
    kw = {k: get_value(v) if isinstance(v, ObjectRef) else v for k, v in kwargs.items()}
    return a, kw


def wait_refs(
    refs: list[ObjectRef], num_returns: Optional[int], timeout: Optional[float]
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """``ray.wait``: the references whose values are here once ``num_returns`` (all if
    ``None``) are, or ``timeout`` seconds passed; and the others (both in order)."""
    st = _store()
    want = len(refs) if num_returns is None else num_returns
    ready: set[int] = set()
    pending: dict[int, int] = {}  # id(future) -> position
    futs: list[Future] = []
    for i, r in enumerate(refs):
        f = st._arrival((r.owner, r.id))
        if f is None:
            ready.add(i)
        else:
            pending[id(f)] = i
            futs.append(f)
    if len(ready) < want and futs and timeout != 0:
        timer: Optional[Future] = None
        if timeout is not None:
            timer = Future()
            charm.scheduleCallableAfter(timer, timeout)
            futs.append(timer)
        for f in charm.iwait(futs):
            if f is timer:
                break
            ready.add(pending[id(f)])
            if len(ready) >= want:
                break
    return [r for i, r in enumerate(refs) if i in ready], [r for i, r in enumerate(refs) if i not in ready]
