"""Contributions made in a constructor (to a future and to a remote method)."""

from charmrs import Array, Chare, Future, Reducer, charm


class C(Chare):
    def __init__(self, f, g):
        self.contribute(self.thisIndex[0], Reducer.sum, f)
        self.contribute(self.thisIndex[0], Reducer.gather, g)


def main(args):
    f, g = Future(), Future()
    Array(C, 6, args=[f, g])
    print("ctor contributions:", f.get() == 15, g.get() == list(range(6)))
    charm.exit(0)


charm.start(main)
