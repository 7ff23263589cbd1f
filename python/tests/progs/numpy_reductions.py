"""Reductions of numpy arrays with sum/product/max/min (combined natively, element by
element): several dtypes and shapes, non-contiguous contributions, NaN, integer
wrap-around, to a future, to a method and as an allreduce; dtypes reduced in Python
(float16, bool) give the same results. With ``mismatch``: contributions of different
shapes end the job with a clear error."""

import sys

import numpy as np

from charmrs import Array, Chare, Future, Reducer, charm, coro


def contribution(i, dtype, shape):
    v = (np.arange(int(np.prod(shape))) * (i + 1) % 7 + i).reshape(shape)
    return v.astype(dtype)


CASES = [
    ("sum", "f8", (2, 3)),
    ("product", "f8", (4,)),
    ("max", "i4", (3, 2)),
    ("min", "u1", (5,)),
    ("sum", "i8", ()),
    ("sum", "u2", (6,)),
    ("max", "f4", (3,)),
    ("sum", "f2", (3,)),
    ("max", "?", (4,)),
]


def expected(n, reducer, dtype, shape):
    stack = np.stack([contribution(i, dtype, shape) for i in range(n)])
    ufunc = {"sum": np.add, "product": np.multiply, "max": np.maximum, "min": np.minimum}[reducer]
    return ufunc.reduce(stack, axis=0, dtype=stack.dtype)


class Cell(Chare):
    def __init__(self):
        self.got = None

    def run(self, futs):
        i = self.thisIndex[0]
        for (reducer, dtype, shape), f in zip(CASES, futs):
            self.contribute(contribution(i, dtype, shape), getattr(Reducer, reducer), f)

    def strided(self, f):
        big = np.arange(12.0).reshape(3, 4) * (self.thisIndex[0] + 1)
        self.contribute(big[:, ::2], Reducer.sum, f)  # not contiguous

    def special(self, f1, f2):
        i = self.thisIndex[0]
        v = np.array([1.0, 2.0, 3.0], dtype=np.float64)
        if i == 1:
            v[1] = np.nan
        self.contribute(v, Reducer.max, f1)
        self.contribute(np.array([2**30, -(2**30)], dtype=np.int32), Reducer.sum, f2)

    def to_method(self):
        self.contribute(np.full(3, self.thisIndex[0], dtype=np.int64), Reducer.sum, self.thisProxy[0].collect)

    def collect(self, result):
        self.got = result

    def collected(self):
        return self.got

    @coro
    def all(self):
        r = self.allreduce(np.full((2, 2), self.thisIndex[0] + 1.0), Reducer.product).get()
        return r.dtype.str, r.shape, float(r[0, 0])

    def mismatch(self, f):
        self.contribute(np.zeros(2 if self.thisIndex[0] == 0 else 3), Reducer.sum, f)


def main(args):
    n = 3 * charm.numPes()
    a = Array(Cell, n)
    charm.awaitCreation(a)
    if "mismatch" in args:
        f = Future()
        a.mismatch(f)
        f.get()
        print("mismatch went through (unexpected)")
        exit(0)
    checks = {}
    futs = [Future() for _ in CASES]
    a.run(futs)
    for (reducer, dtype, shape), f in zip(CASES, futs):
        got, want = f.get(), expected(n, reducer, dtype, shape)
        ok = isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        checks[f"{reducer} {dtype} {shape}"] = ok and np.array_equal(got, want)
    f = Future()
    a.strided(f)
    checks["non-contiguous"] = np.array_equal(f.get(), np.arange(12.0).reshape(3, 4)[:, ::2] * sum(range(1, n + 1)))
    f1, f2 = Future(), Future()
    a.special(f1, f2)
    m = f1.get()
    checks["NaN wins max"] = m[0] == 1.0 and np.isnan(m[1]) and m[2] == 3.0
    want = np.add.reduce(np.array([[2**30, -(2**30)]] * n, dtype=np.int32), axis=0, dtype=np.int32)
    checks["int32 wraps as numpy"] = np.array_equal(f2.get(), want)
    a.to_method()
    charm.sleep(0.3)
    got = a[0].collected(ret=True).get()
    checks["to a method"] = got is not None and np.array_equal(got, np.full(3, n * (n - 1) // 2))
    res = a.all(ret=True).get()
    prod = float(np.prod(np.arange(1.0, n + 1)))
    checks["allreduce"] = all(r == ("<f8", (2, 2), prod) for r in res)
    for name, good in checks.items():
        print(f"{name}: {good}")
    exit(0 if all(checks.values()) else 1)


charm.start(main)
