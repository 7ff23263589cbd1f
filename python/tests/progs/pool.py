"""charm.pool: map (chunksize, ncores), map_async, multi_future, Task (ret,
awaitable, fire and forget), submit, nested tasks (recursive fib, with and without
@coro), exceptions in tasks, and which PEs ran tasks."""

import time

from charmrs import Chare, Future, charm, coro


def square(x):
    return x * x


def where(x):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.002:
        pass
    return charm.myPe()


@coro
def fib(n):
    if n < 2:
        return n
    return sum(charm.pool.map(fib, [n - 1, n - 2]))


def fib_plain(n):
    # Not decorated: tasks run as coroutines anyway, so waiting here works too.
    if n < 2:
        return n
    a = charm.pool.Task(fib_plain, (n - 1,), ret=True)
    b = charm.pool.Task(fib_plain, (n - 2,), ret=True)
    return a.get() + b.get()


def boom(x):
    if x == 7:
        raise KeyError(f"task {x} failed")
    return x


class Sink(Chare):
    def __init__(self):
        self.got = []

    def put(self, x):
        self.got.append(x)

    def values(self):
        return sorted(self.got)


def notify(sink, x):
    sink.put(x * 10)


def main(args):
    n = charm.numPes()
    assert charm.pool.map(square, range(10), chunksize=2) == [x * x for x in range(10)]
    assert charm.pool.map(abs, range(-1, -20, -1)) == list(range(1, 20))
    assert charm.pool.map(square, []) == []
    assert charm.pool.map(square, range(50), chunksize=7, ncores=2) == [x * x for x in range(50)]
    f = charm.pool.map_async(square, range(5))
    assert f.get() == [0, 1, 4, 9, 16]
    futs = charm.pool.map_async(square, range(4), multi_future=True)
    assert [x.get() for x in futs] == [0, 1, 4, 9]
    assert charm.pool.submit([(square, 3), (abs, -4)]) == [9, 4]
    assert charm.pool.submit([(square, i) for i in range(20)], chunksize=3) == [i * i for i in range(20)]

    assert fib(12) == 144
    assert charm.pool.Task(fib, (15,), ret=True).get() == 610
    assert charm.pool.Task(fib_plain, (12,), ret=True).get() == 144
    assert charm.pool.Task(square, (5,), awaitable=True).get() == 25

    sink = Chare(Sink, onPE=0)
    for i in range(5):
        charm.pool.Task(notify, (sink, i))
    charm.waitQD()
    assert sink.values(ret=True).get() == [0, 10, 20, 30, 40]

    # Every PE runs tasks: 40 tasks of 2 ms per PE, mapped again (up to 10 times) if a
    # PE got none, which a loaded machine may cause when the others stole them all.
    pes = set()
    for _ in range(10):
        pes |= set(charm.pool.map(where, range(40 * n)))
        if pes == set(range(n)):
            break
    assert pes == set(range(n)), f"tasks ran on PEs {sorted(pes)} of {n}"

    try:
        charm.pool.map(boom, range(20), chunksize=3)
    except KeyError as e:
        assert "task 7 failed" in str(e), e
    else:
        raise AssertionError("an exception in a task did not reach map")
    try:
        charm.pool.map(lambda x: x, [1])
    except TypeError as e:
        assert "module-level function" in str(e)
    else:
        raise AssertionError("a lambda was accepted as a task")
    print("pool: all checks passed on", n, "PEs", flush=True)
    charm.exit()


charm.start(main)
