"""The manual's reduction tutorial: an array of 20 chares sums the value broadcast to
them into a future, then into a method of element 7; gathers; and a custom reducer.

    python3 -m charmrs.run +p4 examples/python/reductions.py
"""

from charmrs import Array, Chare, Future, Reducer, charm


def longest(contribs):
    """A custom reducer: the longest string."""
    return max(contribs, key=len)


Reducer.addReducer(longest)


class RedTest(Chare):
    def work(self, data, callback):
        self.reduce(callback, data, Reducer.sum)

    def printResult(self, result):  # noqa: N802 (the manual's name)
        print("[" + str(self.thisIndex[0]) + "] Result is", result, flush=True)
        charm.exit(0)

    def names(self, future):
        self.contribute("x" * (self.thisIndex[0] % 7), Reducer.longest, future)

    def where(self, future):
        self.contribute(charm.myPe(), Reducer.gather, future)


def main(args):
    a = Array(RedTest, 20)
    f = Future()
    a.work(1, f)
    print("sum of 20 ones:", f.get())
    f = Future()
    a.where(f)
    print("PE of each element:", f.get())
    f = Future()
    a.names(f)
    print("longest name:", f.get())
    a.work(1, a[7].printResult)


charm.start(main)
