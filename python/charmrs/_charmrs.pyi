"""The native module of charmrs (private: use the ``charmrs`` package)."""

from typing import Any, Callable, Optional, Sequence, final

__all__ = [
    "BoundEntry",
    "CharmError",
    "EntryMethod",
    "Proxy",
    "RawFuture",
    "abort",
    "at_sync",
    "call_after",
    "contribute",
    "create_array",
    "create_group",
    "create_single",
    "create_sparse",
    "exit",
    "host_pes",
    "launch",
    "make_sections",
    "migrate",
    "pool_map",
    "pool_submit",
    "my_pe",
    "node_first_pe",
    "num_pes",
    "pe_host",
    "reduce_fast",
    "register_proxy_class",
    "set_local_msg_optim",
    "set_migratable",
    "set_ro_dirty",
    "start",
    "start_qd",
    "timer",
    "topo_subtrees",
    "topo_tree_edges",
    "topology",
    "user_args",
    "set_profiling",
    "profile",
]

class CharmError(Exception):
    """An error of the charmrs runtime, or a remote exception that could not be pickled."""

@final
class Proxy:
    """A proxy of a chare collection, or of one element of it."""

    def elem(self, index: Sequence[int]) -> Proxy:
        """The proxy of element ``index`` of this collection."""
    def send(
        self,
        method: str,
        args: bytes,
        coro: bool,
        want: int,
        kwargs: bool = False,
        when: bool = False,
        bufs: Optional[Sequence[Any]] = None,
    ) -> Optional[RawFuture]:
        """Sends a call of ``method`` with pickled ``args`` (``bufs``: its out-of-band
        buffers, as uint8 arrays); a future if ``want`` > 0."""
    def send_args(self, method: str, args: tuple[Any, ...], coro: bool, want: int, when: bool = False) -> Optional[RawFuture]:
        """Sends a call of ``method`` with positional ``args``: plain ones encoded
        natively, numpy arrays as raw bytes, futures and proxies beside the pickle of
        the rest; a future if ``want`` > 0."""
    def delivered_in_process(self) -> bool:
        """Whether a call through this proxy now is delivered in this process."""
    def insert(self, index: Sequence[int], cls: str, args: bytes, pe: int) -> None:
        """Inserts element ``index`` (class ``cls``, pickled ``args``) into this sparse
        array, on PE ``pe`` (its home PE if negative)."""
    def done_inserting(self) -> RawFuture:
        """Ends the insertions into this sparse array."""
    def to_bytes(self) -> bytes:
        """The proxy as bytes."""
    def is_group(self) -> bool:
        """Whether the proxy names a group or one of its elements."""
    def is_section(self) -> bool:
        """Whether the proxy names a section."""
    @staticmethod
    def from_bytes(b: bytes) -> Proxy:
        """The proxy sent as ``to_bytes``."""

@final
class EntryMethod:
    """An entry method of a proxy class (a descriptor): reading it on a proxy gives
    the ``BoundEntry`` that sends the call."""

    def __new__(cls, name: str, coro: bool, when: bool, fallback: Callable[..., Any]) -> EntryMethod: ...
    def __get__(self, instance: Any, owner: Any = None, /) -> Any: ...
    @property
    def __name__(self) -> str: ...
    @property
    def coro(self) -> bool: ...

@final
class BoundEntry:
    """``proxy.method``: calling it sends the call."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    @property
    def __self__(self) -> Any: ...
    @property
    def __name__(self) -> str: ...
    @property
    def coro(self) -> bool: ...

@final
class RawFuture:
    """A future of the runtime (wrapped by ``charmrs.Future``)."""

    def __new__(cls, num_vals: int = 1) -> RawFuture:
        """A new future owned by this PE, taking ``num_vals`` values."""
    def send(self, value: bytes) -> None:
        """Sets the value (pickled), from any PE."""
    def to_bytes(self) -> bytes:
        """The future as bytes."""
    def is_ready(self) -> bool:
        """Whether the value (every value) arrived; False off the PE that made it."""
    def ready_value(self, pending: Any) -> Any:
        """The value (raised if it is an error) if it already arrived, else ``pending``."""
    @staticmethod
    def from_bytes(b: bytes) -> RawFuture:
        """The future sent as ``to_bytes``."""

def start(main: Any, argv: Sequence[str]) -> int:
    """Runs the runtime with greenlet ``main`` on PE 0; returns the job's exit code."""

def launch(args: Sequence[str], python: str, interactive_script: Optional[str] = None) -> int:
    """Runs a job as ``charmrs-run`` does; returns its exit status. With
    ``++interactive`` and no program, the program is ``interactive_script``."""

def my_pe() -> int:
    """This PE's number."""

def num_pes() -> int:
    """The number of PEs of the job."""

def exit(code: int) -> None:
    """Ends the job with ``code`` once the current method returns."""

def abort(message: str) -> None:
    """Ends the job at once with ``message``."""

def set_local_msg_optim(on: bool) -> None:
    """Sets ``charm.options.local_msg_optim`` (from ``charm.start``)."""

def set_ro_dirty(dirty: bool) -> None:
    """Says whether readonlies changed since their last broadcast."""

def reduce_fast(chare: Any, data: Any, reducer: Any, callback: Any) -> Any:
    """``Chare.contribute``/``reduce``/``allreduce`` in their common cases (an empty
    reduction, a number to a built-in numeric reducer, to a future or every element);
    ``NotImplemented`` for the others."""

def register_proxy_class(cls: type, path: str) -> None:
    """Registers the proxy class of the chare class at ``path``: its proxies then
    travel as plain arguments."""

def set_profiling(on: bool) -> None:
    """Turns Python-level profiling on or off (before the job starts)."""

def profile() -> Optional[
    tuple[
        list[tuple[str, str, float, float, float, int]],
        tuple[int, int, int, int],
        tuple[int, int, int, int],
        tuple[float, float, float],
    ]
]:
    """This PE's profile (rows per class and method, sizes sent and received, seconds in
    reductions, custom reductions and migrating out); ``None`` if off."""

def user_args(argv: list[str]) -> list[str]:
    """``argv`` without the runtime's options; a bad option is a ``ValueError``."""

def at_sync(elem: Proxy) -> None:
    """``AtSync()`` of array element ``elem`` (the caller's own): ready for load balancing."""

def migrate(elem: Proxy, pe: int) -> None:
    """Moves array element ``elem`` (the caller's own) to PE ``pe`` after the running method."""

def set_migratable(elem: Proxy, migratable: bool) -> None:
    """Whether the load balancer may move element ``elem`` (the caller's own)."""

def create_group(cls: str, args: bytes, pes: Optional[Sequence[int]] = None) -> tuple[Proxy, RawFuture]:
    """Creates a group of class ``cls`` (``module:qualname``), on ``pes`` only if given."""

def create_array(cls: str, dims: Sequence[int], args: bytes, map: Optional[Proxy] = None) -> tuple[Proxy, RawFuture]:
    """Creates an array of class ``cls`` of shape ``dims`` (placed by the ``ArrayMap``
    group ``map`` if given)."""

def create_sparse(cls: str, ndims: int, map: Optional[Proxy] = None) -> tuple[Proxy, RawFuture]:
    """Creates an empty sparse array of class ``cls`` with ``ndims``-d indexes."""

def create_single(cls: str, pe: int, args: bytes, deferred: bool = False) -> tuple[Proxy, RawFuture]:
    """Creates one chare of class ``cls`` on PE ``pe`` (any PE if negative); ``deferred``:
    its ``__init__`` is not run (it is sent later, as a coroutine call)."""

def contribute(
    elem: Proxy,
    data: Optional[bytes],
    reducer: Optional[str],
    future: Optional[RawFuture] = None,
    proxy: Optional[Proxy] = None,
    method: Optional[str] = None,
    coro: bool = False,
    number: Optional[float] = None,
    section: Optional[Proxy] = None,
    array: Optional[tuple[str, Sequence[int], bytes]] = None,
) -> Optional[RawFuture]:
    """Contributes to the next reduction of the collection of ``elem`` (or of the
    section ``section``, which ``elem`` belongs to). ``number`` or ``array``
    (``(dtype.str, shape, bytes)`` of a numpy array) with ``sum``/``product``/``max``/
    ``min``: reduced natively."""

def pool_submit(func: bytes, args: bytes, want: int) -> Optional[RawFuture]:
    """Submits ``func(*args)`` (pickled) to the pool; a future of its pickled result
    if ``want`` is not 0."""

def pool_map(func: bytes, chunks: Sequence[bytes], ncores: int) -> RawFuture:
    """Maps ``func`` over each pickled chunk of items as pool tasks (at most ``ncores``
    at once if positive); the future gives the list of per-chunk result lists."""

def make_sections(
    proxies: Sequence[Proxy],
    n: int,
    func: Optional[bytes] = None,
    elems: Optional[Sequence[Sequence[Sequence[int]]]] = None,
    slice: Optional[Sequence[tuple[int, int, int]]] = None,
) -> RawFuture:
    """Makes ``n`` sections of one proxy (by pickled section function, element lists or
    one slice), or combines several proxies into one section; the future gives the
    list of section proxies."""

def timer(secs: float) -> RawFuture:
    """A future completed after ``secs`` seconds."""

def call_after(callable: Callable[..., Any], secs: float, args: tuple[Any, ...]) -> None:
    """Calls ``callable(*args)`` on this PE after ``secs`` seconds."""

def start_qd(
    future: Optional[RawFuture] = None, proxy: Optional[Proxy] = None, method: Optional[str] = None, coro: bool = False
) -> None:
    """Starts quiescence detection."""

def topology() -> tuple[int, int, int, int]:
    """``(hosts, this host, this process, processes)``."""

def host_pes(host: int) -> list[int]:
    """The PEs of ``host``."""

def pe_host(pe: int) -> tuple[int, int]:
    """``(host of pe, rank of pe on its host)``."""

def node_first_pe(node: int) -> int:
    """The first PE of process ``node``."""

def topo_tree_edges(pe: int, root: int, pes: Optional[Sequence[int]] = None, bfactor: int = 4) -> tuple[Optional[int], list[int]]:
    """``(parent, children)`` of ``pe`` in the spanning tree rooted at ``root``."""

def topo_subtrees(root: int, pes: Optional[Sequence[int]] = None, bfactor: int = 4) -> list[list[int]]:
    """The subtrees under ``root``."""
