"""Futures of every kind: ret=True on an element and on a broadcast, awaitable=True,
explicit futures sent to another chare, a @coro method that waits, a remote exception
re-raised at the caller, awaitCreation and single chares."""

from charmrs import Array, Chare, CharmError, Future, Group, charm, coro


class Unpicklable(Exception):
    def __init__(self, why):
        super().__init__(why)
        self.lock = __import__("threading").Lock()


class Worker(Chare):
    def __init__(self, base):
        self.base = base

    def work(self, x):
        index = self.thisIndex if isinstance(self.thisIndex, int) else self.thisIndex[0]
        return self.base + 10 * x + index

    def where(self):
        return charm.myPe()

    def index(self):
        return self.thisIndex

    def fill(self, fut, v):
        fut.send(v + 1)

    def boom(self):
        raise KeyError("remote failure")

    def unpicklable(self):
        raise Unpicklable("no")

    @coro
    def relay(self, other):
        return other.where(ret=True).get() * 100

    @coro
    def threads_inside(self, other):
        # Charm4py's _numthreads: this coroutine is running (and suspends here).
        during = self._numthreads
        other.where(ret=True).get()
        return during, self._numthreads

    def threads_after(self):
        return self._numthreads


def main(args):
    n = charm.numPes()
    a = Array(Worker, 2 * n, args=[1000])
    charm.awaitCreation(a)
    print("element 1:", a[1].work(5, ret=True).get())
    try:
        a[2 * n].work(5)
    except CharmError as e:
        print("outside:", "outside the array's shape" in str(e))
    print("broadcast:", a.work(1, ret=True).get() == [1010 + i for i in range(2 * n)])
    print("awaited:", a.work(1, awaitable=True).get())
    f = Future()
    a[2 * n - 1].fill(f, 41)
    print("explicit:", f.get())
    s = Chare(Worker, args=[0], onPE=n - 1)
    print("single on the last PE:", s.where(ret=True).get() == n - 1)
    print("relay:", a[0].relay(s, ret=True).get() == 100 * (n - 1))
    fut = a[1].boom(ret=True)
    try:
        fut.get()
        print("no exception (unexpected)")
    except KeyError as e:
        print("caught:", e.args == ("remote failure",) and "in boom" in e.remote_traceback)
    try:
        fut.get()
    except KeyError:
        print("caught again: True")
    try:
        a[1].unpicklable(awaitable=True).get()
    except CharmError as e:
        print("unpicklable:", "Unpicklable: no" in str(e))
    g = Group(Worker, args=[7])
    print("group:", g.where(ret=True).get() == list(range(n)))
    print("indices:", a[1].index(ret=True).get() == (1,), g[n - 1].index(ret=True).get() == n - 1)
    multi = Future(num_vals=3)
    for i in range(3):
        a[i % (2 * n)].fill(multi, i)
    print("multi:", sorted(multi.get()) == [1, 2, 3])
    a2 = Array(Worker, [2, 3], args=[0])
    print("2-d index:", a2[1, 2].index(ret=True).get() == (1, 2), a2[[1, 2]].index(ret=True).get() == (1, 2))
    t = a[0].threads_inside(a[2 * n - 1], ret=True).get()
    print("numthreads:", t == (1, 1) and a[0].threads_after(ret=True).get() == 0)
    charm.exit(0)


charm.start(main)
