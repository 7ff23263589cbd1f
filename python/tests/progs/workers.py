"""Coroutine methods and pool tasks run one after the other on reused greenlets: each
starts in a fresh contextvars context, a job that raises does not spoil the next, and
many at once each get their own."""

import contextvars

from charmrs import Chare, Future, Group, charm, coro

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def square_or_fail(x):
    if x == 13:
        raise KeyError("thirteen")
    var.set("task")
    return x * x


class C(Chare):
    @coro
    def job(self, i, fail):
        seen = var.get()
        var.set(f"job {i}")
        f = Future()
        self.thisProxy[self.thisIndex].echo(f, i)
        v = f.get()  # the worker switches out and back in here
        if fail:
            raise ValueError(f"job {i} fails")
        return seen, v, var.get()

    def echo(self, f, i):
        f.send(i)


def main(args):
    g = Group(C)
    ok = failed = 0
    for i in range(300):
        fail = i % 7 == 3
        try:
            seen, v, mine = g[i % charm.numPes()].job(i, fail, ret=True).get()
            assert (seen, v, mine) == ("unset", i, f"job {i}"), (seen, v, mine)
            ok += 1
        except ValueError as e:
            assert fail and str(e).startswith(f"job {i} fails"), e
            failed += 1
    futs = [g[i % charm.numPes()].job(i, False, ret=True) for i in range(200)]
    assert [f.get() for f in futs] == [("unset", i, f"job {i}") for i in range(200)]
    for _ in range(3):
        try:
            charm.pool.map(square_or_fail, range(20))
            raise AssertionError("the failing task was not reported")
        except KeyError:
            pass
        assert charm.pool.map(square_or_fail, range(14, 200), chunksize=3) == [x * x for x in range(14, 200)]
    print(f"workers: {ok} jobs, {failed} failed as asked, 200 at once, pool ok", flush=True)
    exit()


charm.start(main)
