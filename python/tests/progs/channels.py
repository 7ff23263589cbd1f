"""Channels: the manual's example (every element streams to both neighbours, receives
with charm.iwait), in-order delivery, several channels between one pair, numpy arrays
(views of an array the sender keeps changing, as stencil codes send: the receiver gets
the values of the moment of the send)."""

import numpy as np

from charmrs import Array, Channel, Chare, charm, coro

NUM_ITER = 30


class A(Chare):
    def __init__(self, numchares):
        myidx = self.thisIndex[0]
        self.neighbors = [(myidx + 1) % numchares, (myidx - 1) % numchares]
        self.channels = [Channel(self, remote=self.thisProxy[nb]) for nb in self.neighbors]
        assert all(ch.remote == self.thisProxy[nb] for ch, nb in zip(self.channels, self.neighbors))

    @coro
    def work(self):
        me = self.thisIndex[0]
        total = 0
        for i in range(NUM_ITER):
            for ch in self.channels:
                ch.send(me, i, "x" * i)
            got = 0
            for ch in charm.iwait(self.channels):
                src, it, pad = ch.recv()
                assert it == i and len(pad) == i, (it, i)
                total += src
                got += 1
            assert got == 2
        return total


class Pair(Chare):
    @coro
    def talk(self, other):
        a = Channel(self, remote=other)
        b = Channel(self, remote=other)  # a second channel to the same chare
        for i in range(200):
            a.send(i)
            b.send(-i)
        ok = all(a.recv() == i and b.recv() == -i for i in range(200))
        return ok


class Halo(Chare):
    @coro
    def swap(self, other, steps):
        ch = Channel(self, remote=other)
        data = np.zeros((4, 3000))
        ok = True
        for k in range(steps):
            data[:] = k + self.thisIndex[0]
            ch.send(k, data[1, :], data[2, :4].copy())
            data[:] = -1  # changed right after the send: the receiver must not see it
            got_k, edge, small = ch.recv()
            other_idx = 1 - self.thisIndex[0]
            ok &= got_k == k and bool((edge == k + other_idx).all()) and bool((small == k + other_idx).all())
        return ok


def main(args):
    n = charm.numPes() * 4
    array = Array(A, n, args=[n])
    totals = array.work(ret=True).get()
    want = [((i + 1) % n + (i - 1) % n) * NUM_ITER for i in range(n)]
    print("ring:", totals == want)
    p = Array(Pair, 2)
    r = [p[0].talk(p[1], ret=True), p[1].talk(p[0], ret=True)]
    print("order:", all(f.get() for f in r))
    h = Array(Halo, 2)
    r = [h[0].swap(h[1], 50, ret=True), h[1].swap(h[0], 50, ret=True)]
    print("numpy:", all(f.get() for f in r))
    charm.exit(0)


charm.start(main)
