"""Chares, groups, arrays and their proxies."""

from __future__ import annotations

import inspect
import numbers
import operator
import pickle
import sys
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

from greenlet import getcurrent

from . import _charmrs, _glue
from ._charmrs import reduce_fast as _reduce_fast
from .exceptions import CharmError
from . import wait as _wait
from .future import Future, _from_raw
from .readonly import flush as _ro_flush
from .readonly import readonlies as _RO
from .reduction import _Reducer

F = TypeVar("F", bound=Callable[..., Any])


def coro(fn: F) -> F:
    """Marks a chare method as a coroutine: it may suspend (``Future.get()``,
    ``charm.awaitCreation``) while the PE runs other work."""
    fn._charmrs_coro = True  # type: ignore[attr-defined]
    return fn


#: Charm4py's older name for ``coro``.
threaded = coro


def when(condition: Union[str, Callable[..., bool]]) -> Callable[[F], F]:
    """Delays each call of the decorated method until ``condition`` holds on the
    chare: a Python expression over ``self`` and the method's parameters (parsed here,
    once: see ``charmrs.wait``; ``self.attr == arg`` is compared without evaluating an
    expression), a callable ``condition(self, *args, **kwargs)``, or (Charm4py's older
    form) the name of an attribute, not a parameter, that must equal the first
    argument. Calls that wait are re-checked after each method of the chare runs."""

    def decorate(fn: F) -> F:
        check: Callable[..., bool]
        if callable(condition):
            check = condition
        elif not isinstance(condition, str):
            raise TypeError(f"@when takes a condition string or a callable, not {condition!r}")
        else:
            sig = inspect.signature(fn)
            kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            params = list(sig.parameters.values())[1:]
            named = [p.name for p in params if p.kind in kinds or p.kind == inspect.Parameter.KEYWORD_ONLY]
            if condition.isidentifier() and condition not in named and condition not in fn.__globals__:
                attr = condition

                def check(self: Any, first: Any = None, *args: Any, **kwargs: Any) -> bool:
                    return bool(getattr(self, attr) == first)

            else:
                cond = _wait.parse_cond_str(
                    condition, fn.__module__, {n: i for i, n in enumerate(named)}, fn.__globals__, fn.__qualname__
                )
                n = len(named)
                simple = all(p.kind in kinds for p in params)

                def check(self: Any, *args: Any, **kwargs: Any) -> bool:
                    if kwargs or len(args) != n or not simple:
                        bound = sig.bind(self, *args, **kwargs)
                        bound.apply_defaults()
                        args = tuple(bound.arguments[name] for name in named)
                    return cond.evaluateWhen(self, args)

        fn._charmrs_when = check  # type: ignore[attr-defined]
        return fn

    return decorate


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Proxy:
    """A proxy: calling a method on it sends the call to every element of the
    collection, or to one element (``proxy[i]``). Keyword arguments ``ret=True`` (the
    return value, a list for a broadcast) and ``awaitable=True`` (completion) make the
    call return a ``Future``. ``proxy.method`` (not called) is a callback for
    reductions and ``startQD``. Each chare class gets its own proxy class, with one
    method per entry method."""

    __slots__ = ("_raw", "_cls", "_created", "_elems", "_slices", "_sparse")

    def __init__(self, raw: Any, cls: type, created: Optional[Future] = None) -> None:
        self._raw = raw
        self._cls = cls
        self._created = created
        self._elems: Optional[dict[Any, Proxy]] = None
        self._slices: Optional[dict[Any, Proxy]] = None
        self._sparse = False

    def __getitem__(self, index: Any) -> "Proxy":
        # Element proxies are immutable: the ones used are kept (up to a bound), which
        # saves making one per call in loops like `self.thisProxy[i + 1].m()`. Looked
        # up first: only element indexes are kept, and a list or (before Python 3.12) a
        # slice is not hashable.
        elems = self._elems
        if elems is None:
            elems = self._elems = {}
        hashable = True
        try:
            p = elems.get(index)
        except TypeError:
            p, hashable = None, False
        if p is not None:
            return p
        if isinstance(index, slice) or (isinstance(index, tuple) and any(isinstance(i, slice) for i in index)):
            return self._slice(index)
        if isinstance(index, int):
            idx = [index]
        else:
            try:
                idx = [operator.index(index)]  # a numpy integer, say
            except TypeError:
                idx = list(index)
        p = self.__class__(self._raw.elem(idx), self._cls)
        if hashable and len(elems) < 4096:
            elems[index] = p
        return p

    def _slice(self, index: Any) -> "Proxy":
        """The section of the elements whose index is in the slice(s) (made once per
        proxy and slice, in a coroutine)."""
        dims = []
        for s in index if isinstance(index, tuple) else (index,):
            if isinstance(s, int):
                s = slice(s, s + 1, 1)
            if not isinstance(s, slice):
                raise TypeError(f"a section slice takes slices and integers, not {s!r}")
            start, stop, step = s.start, s.stop, s.step
            if any(v is not None and v < 0 for v in (start, stop)) or (step is not None and step < 1):
                raise ValueError(f"section slices take positive bounds and steps: {s!r}")
            dims.append((start or 0, 2**31 - 1 if stop is None else stop, step or 1))
        key = tuple(dims)
        cache = self._slices
        if cache is None:
            cache = self._slices = {}
        found = cache.get(key)
        if found is not None:
            return found
        raw = _charmrs.make_sections([self._raw], 1, slice=dims)
        sec = _make_proxy(Future(_raw=raw).get()[0], self._cls)
        cache[key] = sec
        return sec

    def ckInsert(self, index: Union[int, Sequence[int]], args: Sequence[Any] = (), onPE: int = -1) -> None:  # noqa: N802, N803
        """Inserts element ``index`` into this sparse array (made with ``dims=None``),
        built with ``args``, on PE ``onPE`` (the element's home PE if -1). Calls sent
        to the element before it exists wait for it."""
        _ro_flush()
        if isinstance(index, int):
            idx = [index]
        else:
            try:
                idx = [operator.index(index)]  # type: ignore[arg-type] # a numpy integer, say
            except TypeError:
                idx = list(index)
        self._raw.insert(idx, _path(self._cls), pickle.dumps(tuple(args), protocol=5), onPE)

    def ckDoneInserting(self) -> None:  # noqa: N802
        """Ends the insertions into this sparse array: its reductions complete from then
        (those started before wait for it)."""
        Future(_raw=self._raw.done_inserting())

    @property
    def issec(self) -> Optional[bool]:
        """``True`` for a section proxy, ``None`` for a group or array (Charm4py's
        attribute)."""
        return True if self._raw.is_section() else None

    @property
    def section(self) -> Optional[tuple[int, bytes]]:
        """A section proxy's identity, ``(0, id)`` (Charm4py's ``(root, sid)``: ``id``
        is hashable and the same in every process); ``None`` otherwise."""
        return (0, bytes(self._raw.to_bytes())) if self._raw.is_section() else None

    def ckLocalBranch(self) -> Any:  # noqa: N802 (Charm4py's name)
        """The member of this group on the calling PE: the chare object itself (call
        its methods directly). A group proxy only."""
        from ._glue import LOCAL_BRANCHES

        obj = LOCAL_BRANCHES.get((bytes(self._raw.to_bytes()), _charmrs.my_pe()))
        if obj is None:
            raise CharmError(f"ckLocalBranch: {self!r} is not a group with a member on PE {_charmrs.my_pe()}")
        return obj

    def __getattr__(self, name: str) -> Any:
        # Only names that are not entry methods get here.
        raise AttributeError(f"{self._cls.__qualname__} has no entry method {name!r}")

    def __reduce__(self) -> Any:
        return (_proxy_from_bytes, (bytes(self._raw.to_bytes()), _path(self._cls)))

    def __eq__(self, other: object) -> bool:
        """Proxies are equal when they name the same collection or element."""
        return isinstance(other, Proxy) and bytes(self._raw.to_bytes()) == bytes(other._raw.to_bytes())

    def __hash__(self) -> int:
        return hash(bytes(self._raw.to_bytes()))

    def __repr__(self) -> str:
        # Charm4py's names: <module.ClassGroupProxy ...>, <module.ClassArrayProxy ...>
        # (a single chare's proxy is an array proxy there).
        kind = "Group" if self._raw.is_group() else "Array"
        return f"<{self._cls.__module__}.{self._cls.__qualname__}{kind}Proxy object at {id(self):#x}>"


#: The proxy class of each chare class.
_PROXY_CLASSES: dict[type, type] = {}


#: ``dtype.str`` by dtype (``dtype.str`` formats a new string at each access), keyed by
#: ``id`` with the dtype kept alive in the value (so that no other dtype can take its
#: id); cleared when it grows past a few hundred (programs that make dtypes on the fly).
_DTYPE_STR: dict[int, tuple[Any, str]] = {}


def _dtype_str(dt: Any) -> str:
    hit = _DTYPE_STR.get(id(dt))
    if hit is not None:
        return hit[1]
    if len(_DTYPE_STR) > 256:
        _DTYPE_STR.clear()
    s: str = dt.str
    _DTYPE_STR[id(dt)] = (dt, s)
    return s


def _entry(name: str, coro: bool, when: bool) -> _charmrs.EntryMethod:
    dumps = pickle.dumps
    ro = _RO.__dict__

    def method(self: Proxy, *args: Any, ret: bool = False, awaitable: bool = False, **kwargs: Any) -> Optional[Future]:
        want = 2 if ret else 1 if awaitable else 0
        if ro["_dirty"]:
            _ro_flush()
        if not kwargs:
            # Positional arguments: plain ones encoded natively, numpy arrays as raw
            # bytes, futures and proxies beside the pickle of the rest (in Rust).
            fut = self._raw.send_args(name, args, coro, want, when)
        elif "numpy" not in sys.modules:
            fut = self._raw.send(name, dumps((args, kwargs), 5), coro, want, True, when)
        else:
            # numpy arrays anywhere: the pickle's out-of-band buffers (protocol 5),
            # copied once, never pickled.
            bufs: list[Any] = []
            payload = dumps((args, kwargs), 5, buffer_callback=bufs.append)
            fut = self._raw.send(name, payload, coro, want, True, when, _glue.buffers(bufs) or None)
        return None if fut is None else Future(_raw=fut)

    method.__name__ = name
    # The common calls are sent by the extension without this frame (module `entry`
    # there: by reference in the process, plain arguments natively); it hands the
    # others to ``method``.
    return _charmrs.EntryMethod(name, coro, when, method)


#: Methods of the base class that are also remote methods (Charm4py: "call it via a
#: proxy", ``proxy.migrate(pe)``).
_REMOTE_BASE = frozenset(["migrate", "migrateMe", "setMigratable", "AtSync", "resumeFromSync"])


#: Methods of ``Chare`` that the runtime provides and a chare class may not redefine
#: (Charm4py refuses them too): a redefinition would silently change what the
#: runtime's own calls do.
_RESERVED = frozenset(
    ["contribute", "reduce", "allreduce", "wait", "AtSync", "migrate", "migrateMe", "setMigratable", "_elem"]
)


def _proxy_class(cls: type) -> type:
    pc = _PROXY_CLASSES.get(cls)
    if pc is None:
        ns: dict[str, Any] = {"__slots__": ()}
        for name in dir(cls):
            if name in _RESERVED and getattr(cls, name) is not getattr(Chare, name):
                raise CharmError(f"{cls.__qualname__} redefines reserved method {name!r} of Chare")
            # Every method is an entry method (single-underscore ones too, as in
            # Charm4py), except dunders, the base class's own and the proxy's own names.
            if (name.startswith("__") and name.endswith("__")) or hasattr(Proxy, name):
                continue
            if hasattr(Chare, name) and name not in _REMOTE_BASE:
                continue
            m = getattr(cls, name, None)
            if callable(m):
                ns[name] = _entry(name, bool(getattr(m, "_charmrs_coro", False)), hasattr(m, "_charmrs_when"))
        pc = type(f"{cls.__qualname__}Proxy", (Proxy,), ns)
        _PROXY_CLASSES[cls] = pc
        _charmrs.register_proxy_class(pc, _path(cls))
    return pc


def _creatable(cls: type) -> str:
    """The path of chare class ``cls``, once its proxy class is made (a class that
    redefines a reserved method is refused before anything is created)."""
    _proxy_class(cls)
    return _path(cls)


def _make_proxy(raw: Any, cls: type, created: Optional[Future] = None) -> Proxy:
    return _proxy_class(cls)(raw, cls, created)  # type: ignore[no-any-return]


def _callback(cb: Any) -> Optional[tuple[Any, str, bool]]:
    """``(raw proxy, method, coro)`` if ``cb`` is a remote method (``proxy.method``)."""
    if type(cb) is not _charmrs.BoundEntry or not isinstance(cb.__self__, Proxy):
        return None
    return (cb.__self__._raw, cb.__name__, cb.coro)


def _proxy_from_bytes(b: bytes, path: str) -> Proxy:
    from ._glue import _class

    return _make_proxy(_charmrs.Proxy.from_bytes(b), _class(path))


class Chare:
    """Base class of chares: objects whose methods other chares call by message.

    ``Chare(C, args=[...], onPE=p)`` creates one chare of class ``C`` on PE ``p`` (any
    PE if ``onPE`` is -1) and returns its proxy."""

    thisIndex: Any
    thisProxy: Any
    #: How many ``@coro`` methods of this chare are running (started, not finished;
    #: suspended ones included). Charm4py's name.
    _numthreads: int = 0

    def _elem(self) -> Any:
        # The element's own raw proxy, made once.
        raw = self.__dict__.get("_charmrs_elem")
        if raw is None:
            index = self.thisIndex
            raw = self.thisProxy._raw.elem([index] if isinstance(index, int) else list(index))
            self.__dict__["_charmrs_elem"] = raw
        return raw

    def _charmrs_channel_msg(self, key: tuple[bytes, int], seq: int, *args: Any) -> None:
        from .channel import _deliver

        _deliver(self, key, seq, args)

    def wait(self, condition: Union[str, Callable[[], Any]]) -> None:
        """Suspends the current coroutine until ``condition`` holds: a Python
        expression over ``self`` (re-evaluated after each method of this chare runs),
        or a callable with no arguments."""
        if isinstance(condition, str):
            code = compile(condition, "<wait condition>", "eval")
            env = sys.modules[type(self).__module__].__dict__

            def check() -> bool:
                return bool(eval(code, env, {"self": self}))

        else:

            def check() -> bool:
                return bool(condition())

        while not check():
            g = getcurrent()
            if g.parent is None:
                raise CharmError("wait(condition) suspends: call it in a @coro method or main")
            g.parent.switch((self._elem(), check))

    def contribute(self, data: Any, reducer: Any, callback: Any, section: Any = None) -> None:
        """Gives this element's ``data`` to the next reduction of its collection,
        combined by ``reducer`` (a ``Reducer``); the result goes to ``callback``: a
        ``Future`` or a remote method (``proxy.method``, on one element or all)."""
        if section is not None or _reduce_fast(self, data, reducer, callback) is NotImplemented:
            _reduce(self, data, reducer, callback, section)

    def reduce(self, callback: Any, data: Any = None, reducer: Any = None, section: Any = None) -> None:
        """Same as ``contribute`` with Charm4py's other argument order; with neither
        ``data`` nor ``reducer``, an empty reduction (``callback`` gets no value)."""
        if section is not None or _reduce_fast(self, data, reducer, callback) is NotImplemented:
            _reduce(self, data, reducer, callback, section)

    def allreduce(self, data: Any = None, reducer: Any = None, section: Any = None) -> Future:
        """A reduction whose result every element gets: returns a ``Future`` (wait for
        it in a ``@coro`` method)."""
        if section is None:
            fut = _reduce_fast(self, data, reducer, None)
            if fut is not NotImplemented:
                return fut  # type: ignore[no-any-return]
        fut = _reduce(self, data, reducer, None, section)
        assert fut is not None
        return fut

    def __getstate__(self) -> dict[str, Any]:
        """What migrates: the attributes, without the runtime's per-PE caches."""
        state = dict(self.__dict__)
        state.pop("_charmrs_elem", None)
        return state

    #: Whether the load balancer may move this chare (``setMigratable``); array
    #: elements may by default.
    migratable: bool = True

    def AtSync(self) -> None:  # noqa: N802 (Charm4py's name)
        """Tells the runtime this array element is ready for load balancing. Once
        every element of the array has called it, the balancer chosen with
        ``+balancer NAME`` (GreedyLB, RefineLB, GreedyRefineLB, RotateLB,
        RandCentLB, DistributedLB) may move elements by their measured load; then each
        element's ``resumeFromSync`` runs. Without ``+balancer`` nothing moves."""
        _charmrs.at_sync(self._elem())

    def resumeFromSync(self) -> None:  # noqa: N802 (Charm4py's name)
        """Called on every element after a load-balancing step (after ``AtSync``):
        redefine it to go on."""

    def migrate(self, toPe: int) -> None:  # noqa: N803 (Charm4py's name)
        """Moves this array element to PE ``toPe`` once the running method returns
        (nothing happens if it is there). Also a remote method:
        ``proxy[i].migrate(pe)``. Its messages follow it, none lost or reordered."""
        _charmrs.migrate(self._elem(), toPe)

    def migrateMe(self, toPe: int) -> None:  # noqa: N802, N803 (Charm4py v0.10's name)
        """Old name of ``migrate``."""
        self.migrate(toPe)

    def migrated(self) -> None:
        """Called after this chare migrated to a new PE: redefine it to act then."""

    def setMigratable(self, migratable: bool) -> None:  # noqa: N802 (Charm4py's name)
        """Whether the load balancer may move this chare (array elements may by
        default); ``migrate`` still moves it."""
        self.migratable = bool(migratable)
        if not self.__dict__.get("_charmrs_constructing"):
            _charmrs.set_migratable(self._elem(), self.migratable)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Chare and args and isinstance(args[0], type) and issubclass(args[0], Chare):
            return _create_single(args[0], *args[1:], **kwargs)
        return super().__new__(cls)


#: Built-in reducers that numbers go through in Rust.
_NUMBER_REDUCERS = frozenset(["sum", "product", "max", "min"])


def _reduce(chare: Chare, data: Any, reducer: Any, callback: Any, section: Any) -> Optional[Future]:
    d = chare.__dict__
    if section is None and (callback is None or type(callback) is Future) and "_charmrs_constructing" not in d:
        # The common cases first, with few checks: an empty reduction or a number to a
        # built-in numeric reducer, to a future or to every element (allreduce).
        elem = d.get("_charmrs_elem") or chare._elem()
        raw = None if callback is None else callback._raw
        if reducer is None and data is None:
            fut = _charmrs.contribute(elem, None, None, raw)
            return None if fut is None else _from_raw(fut)
        t = type(data)
        if (
            type(reducer) is _Reducer
            and reducer.name in _NUMBER_REDUCERS
            and reducer.pre is None
            and (t is float or (t is int and -(2**63) <= data < 2**63))
        ):
            fut = _charmrs.contribute(elem, None, reducer.name, raw, None, None, False, data)
            return None if fut is None else _from_raw(fut)
    if d.get("_charmrs_constructing"):
        # The element does not exist until its constructor returns: the contribution
        # is made right after (in order with the others it makes there).
        if callback is None:
            raise CharmError("allreduce in a constructor: call it from a @coro method")
        chare.__dict__.setdefault("_charmrs_pending", []).append((data, reducer, callback, section))
        return None
    sec = None
    if section is not None:
        if not isinstance(section, Proxy):
            raise TypeError(f"section= takes a section proxy, not {section!r}")
        sec = section._raw
    if reducer is not None and getattr(reducer, "name", None) == "nop":
        reducer, data = None, None  # Reducer.nop: an empty reduction
    if reducer is None and data is not None:
        raise ValueError("a reduction with data needs a reducer (Reducer.sum, ...)")
    if reducer is not None and not isinstance(reducer, _Reducer):
        raise TypeError(f"{reducer!r} is not a reducer: use Reducer.sum, Reducer.gather, ... or Reducer.addReducer")
    name = None if reducer is None else reducer.name
    if reducer is not None and reducer.pre is not None:
        data = reducer.pre(data, chare)
    elem = chare._elem()
    t = type(data)
    native: Optional[dict[str, Any]] = None
    np = sys.modules.get("numpy")
    if name not in _NUMBER_REDUCERS:
        pass
    elif t is int or t is float or (t is not bool and isinstance(data, numbers.Real)):
        # Numbers are reduced in Rust (ints of 64 bits stay ints).
        number = data if t is int or t is float else int(data) if isinstance(data, numbers.Integral) else float(data)
        if not isinstance(number, int) or -(2**63) <= number < 2**63:
            native = {"number": number}
    elif np is not None and t is np.ndarray and data.dtype.isnative and data.dtype.kind in "iuf" and data.dtype.str[1:] != "f2":
        # numpy arrays of plain numbers too, element by element (same dtype and shape
        # from every element, as Charm4py requires).
        a = data if data.flags.c_contiguous else np.ascontiguousarray(data)
        native = {"array": (_dtype_str(a.dtype), a.shape, a.tobytes())}
    if native is not None:
        if callback is None:
            return Future(_raw=_charmrs.contribute(elem, None, name, section=sec, **native))
        if isinstance(callback, Future):
            _charmrs.contribute(elem, None, name, future=callback._raw, section=sec, **native)
            return None
        target = _callback(callback)
        if target is None:
            raise TypeError(f"a reduction's callback is a Future or a remote method (proxy.method), not {callback!r}")
        _charmrs.contribute(elem, None, name, proxy=target[0], method=target[1], coro=target[2], section=sec, **native)
        return None
    payload = None if reducer is None else pickle.dumps(data, protocol=5)
    if callback is None:
        fut = _charmrs.contribute(elem, payload, name, section=sec)
        return Future(_raw=fut)
    if isinstance(callback, Future):
        _charmrs.contribute(elem, payload, name, future=callback._raw, section=sec)
        return None
    target = _callback(callback)
    if target is None:
        raise TypeError(f"a reduction's callback is a Future or a remote method (proxy.method), not {callback!r}")
    raw, method, coro = target
    _charmrs.contribute(elem, payload, name, proxy=raw, method=method, coro=coro, section=sec)
    return None


def _split(proxy: Any, n: int, section_func: Any, elems: Any) -> list[Proxy]:
    if not isinstance(proxy, Proxy):
        raise TypeError(f"charm.split takes a group, array or section proxy, not {proxy!r}")
    if (section_func is None) == (elems is None):
        raise ValueError("charm.split takes one of section_func and elems")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"charm.split makes at least one section, not {n!r}")
    if section_func is not None:
        if not callable(section_func):
            raise TypeError(f"section_func must be callable, not {section_func!r}")
        try:
            func = pickle.dumps(section_func, protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise TypeError(
                f"section_func {section_func!r} must be a module-level function: it is sent by name to "
                f"the PEs that evaluate it ({e})"
            ) from None
        raw = _charmrs.make_sections([proxy._raw], n, func=func)
    else:
        elems = list(elems)
        if n == 1 and elems and not all(isinstance(s, list) for s in elems):
            elems = [elems]  # one section's indexes, given flat
        lists = [[[i] if isinstance(i, int) else list(i) for i in sec] for sec in elems]
        if len(lists) != n:
            raise ValueError(f"charm.split: {len(lists)} element lists for {n} sections")
        raw = _charmrs.make_sections([proxy._raw], n, elems=lists)
    return [_make_proxy(r, proxy._cls) for r in Future(_raw=raw).get()]


def _combine(proxies: Sequence[Any]) -> Proxy:
    if not proxies or not all(isinstance(p, Proxy) for p in proxies):
        raise TypeError("charm.combine takes one or more group, array or section proxies")
    raw = _charmrs.make_sections([p._raw for p in proxies], 1)
    return _make_proxy(Future(_raw=raw).get()[0], proxies[0]._cls)


def _create_single(cls: type, args: Sequence[Any] = (), onPE: int = -1, _coro_init: bool = False) -> Proxy:  # noqa: N803
    _ro_flush()
    raw, created = _charmrs.create_single(_creatable(cls), onPE, pickle.dumps(tuple(args), protocol=5), _coro_init)
    if _coro_init:
        # The constructor runs as a coroutine (it may wait), after the chare exists.
        raw.elem([0]).send("__init__", pickle.dumps(tuple(args), protocol=5), True, 0)
    return _make_proxy(raw, cls, Future(_raw=created))


def register(cls: type) -> type:
    """Charm4py's class decorator for chares defined in imported modules: charmrs finds
    chare classes by module and name, so it returns ``cls`` unchanged."""
    return cls


def Group(cls: type, args: Sequence[Any] = (), onPEs: Optional[Sequence[int]] = None) -> Proxy:  # noqa: N802, N803
    """Creates one element of ``cls`` on every PE (or on the PEs of ``onPEs`` only:
    then broadcasts and reductions over the group involve those PEs only); returns
    the group's proxy at once."""
    _ro_flush()
    pes = None if onPEs is None else [int(p) for p in onPEs]
    raw, created = _charmrs.create_group(_creatable(cls), pickle.dumps(tuple(args), protocol=5), pes)
    return _make_proxy(raw, cls, Future(_raw=created))


def Array(  # noqa: N802
    cls: type,
    dims: Union[None, int, Sequence[int]] = None,
    ndims: int = -1,
    args: Sequence[Any] = (),
    map: Optional[Proxy] = None,  # noqa: A002 (Charm4py's name)
    useAtSync: bool = False,  # noqa: N803
) -> Proxy:
    """Creates an array of ``cls`` elements of shape ``dims`` (an int for 1-d); returns
    its proxy at once. With ``dims=None``, an empty sparse array of ``ndims``-d indexes
    (1 if not given) filled with ``proxy.ckInsert(index, args, onPE)`` and closed with
    ``proxy.ckDoneInserting()``. ``map``: the proxy of an ``ArrayMap`` group that
    places the elements. ``useAtSync``: the elements call ``AtSync`` for load
    balancing (accepted for compatibility: any array element may)."""
    _ro_flush()
    if map is not None and not isinstance(map, Proxy):
        raise TypeError(f"map= takes the proxy of an ArrayMap group, not {map!r}")
    mraw = None if map is None else map._raw
    if dims is None:
        raw, created = _charmrs.create_sparse(_creatable(cls), 1 if ndims < 1 else ndims, mraw)
        p = _make_proxy(raw, cls, Future(_raw=created))
        p._sparse = True
        return p
    shape = [dims] if isinstance(dims, int) else list(dims)
    if ndims not in (-1, len(shape)):
        raise ValueError(f"Array: dims {dims!r} has {len(shape)} dimensions, ndims says {ndims}")
    raw, created = _charmrs.create_array(_creatable(cls), shape, pickle.dumps(tuple(args), protocol=5), mraw)
    return _make_proxy(raw, cls, Future(_raw=created))


class ArrayMap(Chare):
    """Places the elements of arrays: subclass it, define ``procNum(self, index)``
    returning the PE of element ``index`` (a tuple), create it as a ``Group`` and pass
    its proxy as ``Array(..., map=proxy)``. Elements may move later; the map only sets
    where they start."""

    def procNum(self, index: tuple[int, ...]) -> int:  # noqa: N802 (Charm4py's name)
        """The PE where element ``index`` is created."""
        raise NotImplementedError(f"{type(self).__qualname__} must define procNum(self, index)")
