"""charm.options.profiling and charm.printStats(): per class and entry method times,
message counts and sizes; printed locally and remotely (charm.thisProxy[pe])."""

import sys

from charmrs import Array, Chare, Future, charm, coro

charm.options.profiling = "--off" not in sys.argv


class Worker(Chare):
    def __init__(self):
        self.n = 0

    def work(self, payload):
        self.n += len(payload)
        self.thisProxy[(self.thisIndex[0] + 1) % 4].note(1)

    def note(self, x):
        self.n += x

    @coro
    def slow(self, f):
        f.send(self.n)


def main(args):
    a = Array(Worker, 4)
    charm.awaitCreation(a)
    for _ in range(10):
        a.work(b"x" * 100)
    f = Future()
    a[0].slow(f)
    f.get()
    charm.waitQD()
    charm.printStats()
    charm.thisProxy[charm.numPes() - 1].printStats(awaitable=True).get()
    exit()


charm.start(main)
