"""charm.options.profiling and charm.printStats(): per class and entry method times,
the runtime's rows (reductions, ...), message counts and sizes; printed locally and
remotely (charm.thisProxy[pe]). The entry chare is a class (``as Mainchare``)."""

import sys

from charmrs import Array, Chare, Future, Reducer, charm, coro

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

    def red(self, f):
        self.contribute(self.n, Reducer.sum, f)


class Main(Chare):
    def __init__(self, args):
        self.thisProxy.hello(awaitable=True).get()
        main(args)

    def hello(self):
        pass


def main(args):
    a = Array(Worker, 4)
    charm.awaitCreation(a)
    for _ in range(10):
        a.work(b"x" * 100)
    f = Future()
    a[0].slow(f)
    f.get()
    charm.waitQD()
    f = Future()
    a.red(f)
    f.get()
    charm.printStats()
    charm.thisProxy[charm.numPes() - 1].printStats(awaitable=True).get()
    exit()


charm.start(Main)
