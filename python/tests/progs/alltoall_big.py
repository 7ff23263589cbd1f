"""Every PE sends every other PE 30 large numpy arrays (3.2 MB each, of a size that
differs per sender) at once: large messages cross the shared-memory rendezvous in every
direction at the same time. Every byte is checked on arrival."""

import numpy as np

from charmrs import Chare, Future, Group, charm, coro

ROUNDS = 30


class X(Chare):
    def __init__(self):
        self.got = 0

    @coro
    def go(self, f):
        me, n = charm.myPe(), charm.numPes()
        for r in range(ROUNDS):
            for p in range(n):
                if p != me:
                    self.thisProxy[p].take(np.full(400_000 + 1000 * me, me * 1000 + r, dtype=np.float64), me, r)
        self.contribute(None, None, f)

    def take(self, a, src, r):
        if a.shape != (400_000 + 1000 * src,) or not (a == src * 1000 + r).all():
            print(f"PE {charm.myPe()}: a bad array from PE {src}, round {r}")
            exit(1)
        self.got += 1

    def count(self):
        return self.got


def main(args):
    g = Group(X)
    f = Future()
    g.go(f)
    f.get()
    charm.waitQD()
    n = charm.numPes()
    total = sum(g[p].count(ret=True).get() for p in range(n))
    print("arrays", total, "of", ROUNDS * n * (n - 1))
    exit(0 if total == ROUNDS * n * (n - 1) else 1)


charm.start(main)
