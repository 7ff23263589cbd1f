"""Reductions: built-in and custom reducers, gather, empty reductions, futures and
remote methods as targets, allreduce in a coroutine."""

from charm4py import Array, Chare, Future, Group, Reducer, charm, coro


def concat(contribs):
    out = []
    for c in contribs:
        out.extend(c)
    return sorted(out)


Reducer.addReducer(concat, post=lambda r: tuple(r))


class Member(Chare):
    def __init__(self, done):
        self.done = done

    def index(self):
        return self.thisIndex if isinstance(self.thisIndex, int) else self.thisIndex[0]

    def work(self, f_sum, f_vec, f_max, f_gather, f_custom):
        i = self.index()
        self.contribute(i, Reducer.sum, f_sum)
        self.contribute([i, 2 * i, 1], Reducer.sum, f_vec)
        self.reduce(f_max, i * 7 % 5, Reducer.max)
        self.contribute(f"e{i}", Reducer.gather, f_gather)
        self.contribute([i], Reducer.concat, f_custom)
        self.reduce(self.thisProxy[0].arrived)

    def arrived(self):
        self.done.send("empty reduction arrived")

    @coro
    def together(self):
        i = self.index()
        total = self.allreduce(i + 1, Reducer.sum).get()
        product = self.allreduce(2, Reducer.product).get()
        everyone = self.allreduce(i, Reducer.gather).get()
        self.allreduce().get()
        half = self.allreduce(0.5, Reducer.sum).get()
        mixed = self.allreduce(i if i % 2 else float(i), Reducer.max).get()
        types = (type(total).__name__, type(half).__name__, type(mixed).__name__)
        return (total, product, everyone, half, mixed, types)


def main(args):
    n = 3 * charm.numPes()
    done = Future()
    a = Array(Member, n, args=[done])
    fs = [Future() for _ in range(5)]
    a.work(*fs)
    print("sum:", fs[0].get() == n * (n - 1) // 2)
    print("vector sum:", fs[1].get() == [n * (n - 1) // 2, n * (n - 1), n])
    print("max:", fs[2].get() == max(i * 7 % 5 for i in range(n)))
    print("gather:", fs[3].get() == [f"e{i}" for i in range(n)])
    print("custom:", fs[4].get() == tuple(range(n)))
    print(done.get())
    results = a.together(ret=True).get()
    want = (n * (n + 1) // 2, 2**n, list(range(n)), n * 0.5, float(n - 1), ("int", "float", "float"))
    print("allreduce:", all(r == want for r in results), len(results) == n)
    g = Group(Member, args=[None])
    print("group allreduce:", g.together(ret=True).get()[0][0] == charm.numPes() * (charm.numPes() + 1) // 2)
    charm.exit(0)


charm.start(main)
