"""numpy arrays as entry-method arguments, everywhere they can be: positional (sent
beside the pickle), nested in lists, dicts, tuples and objects, as keyword arguments
(the pickle's out-of-band buffers, protocol 5), non-contiguous (pickled), of several
dtypes and shapes; to plain, @coro and @when methods, across PEs and processes. The
receiver gets its own writable copy, with the values of the moment of the call even when
the sender changes its array right after (small and large arrays, which cross processes
without a copy on the sending side; also to an element that moved away from its home,
whose calls wait at the home and are forwarded later). Copies everywhere: with
``local_msg_optim`` off (``local_msg_optim.py`` tests it on)."""

import numpy as np

from charmrs import Array, Chare, Future, Reducer, charm, coro, when


class Holder:
    def __init__(self, a):
        self.a = a


def describe(x):
    if isinstance(x, np.ndarray):
        return ("nd", x.dtype.str, x.shape, float(x.sum()), bool(x.flags.writeable))
    if isinstance(x, Holder):
        return ("obj", describe(x.a))
    if isinstance(x, dict):
        return {k: describe(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [describe(v) for v in x]
    return x


class C(Chare):
    def __init__(self):
        self.k = 0
        self.seen = []

    def record(self, k, a, nested=None, kw=None):
        # Each array holds k everywhere; the receiver may change its own.
        arrays = [a] + (nested or []) + ([kw] if kw is not None else [])
        ok = all(bool((x == np.array(k).astype(x.dtype)).all()) and x.flags.writeable for x in arrays)
        a[...] = -1
        self.seen.append((k, ok, a.dtype.str, a.shape))

    def check_mine(self, k, a, f):
        # A broadcast's recipients each get their own copy: writing to it changes
        # nobody else's.
        mine = bool((a == k).all()) and a.flags.writeable
        a[...] = -1
        self.contribute(mine, Reducer.logical_and, f)

    def report(self):
        seen, self.seen = self.seen, []
        return seen

    def plain(self, a, nested, kw=None):
        d = describe([nested, kw])
        a += 1  # writable: the receiver's own (one message keeps the objects' identities)
        return d

    @coro
    def in_coro(self, a, nested, kw=None):
        return describe([a, nested, kw])

    def mixed(self, a, lst, fut, b, proxy, s):
        # Arrays, a future and a proxy around a list: the call is pickled, with them
        # beside the pickle.
        fut.send([describe(a), lst, describe(b), hasattr(proxy, "mixed"), s])

    @when("self.k == int(a[0])")
    def in_when(self, a, nested):
        self.k += 1
        return describe([a, nested])


def main(args):
    p = charm.numPes()
    cells = Array(C, p)
    charm.awaitCreation(cells)
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    f = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    nested = {"list": [x, np.ones(5, dtype=np.uint8)], "obj": Holder(f), "t": (x[:, 1],)}
    want = describe([nested, {"m": x}])
    ok = True
    for i in range(p):
        got = cells[i].plain(x, nested, kw={"m": x}, ret=True).get()
        ok &= got == want
        got = cells[i].in_coro(x, nested, kw={"m": x}, ret=True).get()
        ok &= got == describe([x, nested, {"m": x}])
    for i in range(p):
        fu = Future()
        small, large = np.full(4, 3, dtype=np.int16), np.full(5000, 2.0)
        cells[i].mixed(small, [1, "two"], fu, large, cells, "s")
        ok &= fu.get() == [describe(small), [1, "two"], describe(large), True, "s"]
    # @when: the condition sees the arrays too (sent out of order on purpose).
    futs = [cells[p - 1].in_when(np.array([k]), [np.full(3, k)], ret=True) for k in (2, 0, 1)]
    got = [fu.get() for fu in futs]
    ok &= [g[1][0][3] for g in got] == [6.0, 0.0, 3.0]
    ok &= bool((x == np.arange(12).reshape(3, 4)).all())  # the sender's arrays unchanged

    # The sender reuses its buffers right after each call: small (in the message) and
    # large (out of band: 2 MiB), positional and nested, of several dtypes.
    bufs = [
        np.zeros(4),
        np.zeros((512, 512), dtype=np.float64),
        np.zeros(7, dtype=np.int16),
        np.zeros(3, dtype=np.complex128),
        np.zeros(5, dtype=bool),
        np.zeros(4, dtype="datetime64[s]"),
        np.zeros((), dtype=np.float32),
        np.zeros((0, 3)),
        np.zeros(3, dtype=">i4"),  # not the native byte order
        np.zeros(2, dtype="<U3"),
        np.zeros((2, 2, 2, 3), dtype=np.int64),
    ]
    big = np.zeros(300_000)
    if p > 1:
        # An element that moved away from its home (PE 0): calls to it are forwarded.
        cells[0].migrate(p - 1, awaitable=True).get()
    for i in range(p):
        for k in range(1, 4):
            for b in bufs:
                b[...] = np.array(k).astype(b.dtype)
                cells[i].record(k, b)
            big[:] = k
            cells[i].record(k, big, [big, np.full(2000, k)], kw=big)
            big[:] = -5
            for b in bufs:
                b[...] = np.array(9).astype(b.dtype)
    # Broadcasts of positional arrays, small and large (2 MiB), changed right after, to
    # three elements on each PE.
    many = Array(C, 3 * p)
    for b in (np.full(5, 7.0), np.full(300_000, 7.0), np.full((4, 3), 7, dtype=np.int8)):
        f = Future()
        many.check_mine(7, b, f)
        b[...] = 0
        got = f.get()
        if not got:
            print(f"broadcast of a {b.dtype} array of shape {b.shape}: a recipient saw other values")
        ok &= got
    want_shapes = [(b.dtype.str, b.shape) for b in bufs] + [(big.dtype.str, big.shape)]
    for i in range(p):
        seen = cells[i].report(ret=True).get()
        good = len(seen) == 3 * len(want_shapes) and all(s[1] for s in seen)
        good &= [s[0] for s in seen] == [k for k in range(1, 4) for _ in want_shapes]
        good &= [tuple(s[2:]) for s in seen] == want_shapes * 3
        if not good:
            print(f"element {i}: {seen}")
        ok &= good
    print(f"numpy args: {'all checks passed' if ok else 'MISMATCH'} on {p} PEs")
    exit(0 if ok else 1)


charm.options.local_msg_optim = False
charm.start(main)
