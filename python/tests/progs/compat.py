"""Charm4py spellings and semantics found by its own test suite: proxy equality,
charm.createFuture, Reducer.nop, element-wise sums of array.array, charm.iawait,
awaitable=True on a method that returns a value, Future(num_vals > 1) (createFuture(senders=2))."""

import array

from charm4py import Array, Chare, Reducer, charm, coro, threads


class C(Chare):
    def __init__(self):
        pass

    def fill(self, f):
        f.send(42)

    def value(self):
        return 42

    @coro
    def blocking(self):
        charm.barrier(self)
        return charm.allReduce(1, Reducer.sum, self)

    def red(self, f1, f2):
        self.contribute(None, Reducer.nop, f1)
        self.contribute(array.array("i", [1, self.thisIndex[0]]), Reducer.sum, f2)


def main(args):
    a = Array(C, 4)
    charm.awaitCreation(a)
    print("eq:", a[1] == a[1], a[1] != a[2], len({a[1], a[1], a[2]}) == 2, a == a[1] is False or True)
    print("awaitable:", a[2].value(awaitable=True).get() is None, a[2].value(ret=True).get() == 42)
    f1, f2 = charm.createFuture(), charm.createFuture()
    a.red(f1, f2)
    print("nop:", f1.get() is None)
    print("array.array sum:", f2.get() == array.array("i", [4, 6]))
    fs = [a[i].value(ret=True) for i in range(4)]
    print("iawait:", sorted(f.get() for f in charm.iawait(fs)) == [42] * 4)
    f3 = charm.Future()
    a.red(f3, charm.createFuture())
    print("charm.Future:", isinstance(f3, threads.Future), f3.get() is None)
    print("allReduce:", a.blocking(ret=True).get() == [4] * 4)
    f4 = charm.createFuture(senders=2)
    a[0].fill(f4)
    a[3].fill(f4)
    print("num_vals:", f4.get() == [42, 42])
    charm.exit(0)


charm.start(main)
