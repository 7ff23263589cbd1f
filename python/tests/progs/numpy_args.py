"""numpy arrays as entry-method arguments, everywhere they can be: positional (sent
beside the pickle), nested in lists, dicts, tuples and objects, as keyword arguments
(the pickle's out-of-band buffers, protocol 5), non-contiguous (pickled), of several
dtypes and shapes; to plain, @coro and @when methods, across PEs and processes. The
receiver gets its own writable copy."""

import numpy as np

from charmrs import Array, Chare, charm, coro, when


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

    def plain(self, a, nested, kw=None):
        d = describe([nested, kw])
        a += 1  # writable: the receiver's own (one message keeps the objects' identities)
        return d

    @coro
    def in_coro(self, a, nested, kw=None):
        return describe([a, nested, kw])

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
    # @when: the condition sees the arrays too (sent out of order on purpose).
    futs = [cells[p - 1].in_when(np.array([k]), [np.full(3, k)], ret=True) for k in (2, 0, 1)]
    got = [fu.get() for fu in futs]
    ok &= [g[1][0][3] for g in got] == [6.0, 0.0, 3.0]
    ok &= bool((x == np.arange(12).reshape(3, 4)).all())  # the sender's arrays unchanged
    print(f"numpy args: {'all checks passed' if ok else 'MISMATCH'} on {p} PEs")
    exit(0 if ok else 1)


charm.start(main)
