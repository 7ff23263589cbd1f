"""The benchmark program, the same file for both runtimes: it imports ``charm4py``,
which ``python -m charmrs.run`` maps to charmrs. Prints ``RESULT name value unit``
lines (medians are taken by compare.py over whole runs).

Scenarios (two PEs: two processes):
- ``pingpong_<size>``: one-way latency of an entry-method call carrying a payload
  (bytes for 0 B / 1 KiB, numpy float64 arrays for 64 KiB, 1 MiB, 8 MiB);
- ``msgs_per_s``: small messages per second from PE 0 to PE 1;
- ``ret_roundtrip``: ``proxy.m(ret=True).get()`` round trip from main (PE 0) to PE 1;
- ``bcast_reduce``: a group broadcast whose elements reduce (empty) to a future;
- ``allreduce``: every group element's coroutine runs allreduces of one number, back
  to back (time per allreduce);
- ``array_reduce64``: a 64-element array sums one number each into a future;
- ``pool_map1000_chunk10``: ``charm.pool.map`` of a trivial function over 1000 items
  in chunks of 10 (100 tasks);
- ``pool_fib12``: recursive Fibonacci where every call is a pool task that waits for
  its two halves (465 tasks). Charm4py's pool keeps PE 0 for its scheduler: one
  worker at +p2; charmrs's pool runs on both PEs.
"""

import sys
import time

import numpy as np
from charm4py import Array, Chare, Future, Group, Reducer, charm, coro


class PP(Chare):
    def __init__(self):
        self.left = 0
        self.done = None
        self.count = 0

    def start(self, n, payload, done):
        self.left = n
        self.done = done
        self.thisProxy[1].ping(payload)

    def ping(self, payload):
        self.thisProxy[0].pong(payload)

    def pong(self, payload):
        self.left -= 1
        if self.left == 0:
            self.done.send(None)
        else:
            self.thisProxy[1].ping(payload)

    def flood(self, n, done):
        other = self.thisProxy[1]
        for _ in range(n - 1):
            other.recv(None)
        other.recv(done)

    def recv(self, done):
        self.count += 1
        if done is not None:
            done.send(self.count)

    def noop(self):
        return 1

    @coro
    def allreduce_rounds(self, k):
        for _ in range(k):
            assert self.allreduce(1, Reducer.sum).get() == charm.numPes()

    def bcast(self, fut):
        self.reduce(fut)


class R(Chare):
    def __init__(self):
        pass

    def red(self, fut):
        self.contribute(1, Reducer.sum, fut)


def square(x):
    return x * x


@coro
def pfib(n):
    if n < 2:
        return n
    return sum(charm.pool.map(pfib, [n - 1, n - 2]))


def timed(fn, reps):
    fn(max(1, reps // 10))  # warm up
    t0 = time.perf_counter()
    fn(reps)
    return (time.perf_counter() - t0) / reps


def main(args):
    quick = "--quick" in args
    g = Group(PP)
    charm.awaitCreation(g)
    payloads = [
        ("0B", b"", 2000),
        ("1KiB", b"x" * 1024, 2000),
        ("64KiB", np.ones(8192), 500),
        ("1MiB", np.ones(131072), 50),
        ("8MiB", np.ones(1048576), 10),
    ]
    for name, payload, reps in payloads:
        reps = max(2, reps // 10) if quick else reps

        def rounds(n, payload=payload):
            f = Future()
            g[0].start(n, payload, f)
            f.get()

        print(f"RESULT pingpong_{name} {timed(rounds, reps) / 2 * 1e6:.3f} us", flush=True)

    n = 2000 if quick else 20000

    def flood(k):
        f = Future()
        g[0].flood(k, f)
        assert f.get() >= k

    print(f"RESULT msgs_per_s {1 / timed(flood, n):.0f} msg/s", flush=True)

    def ret(k):
        for _ in range(k):
            g[1].noop(ret=True).get()

    print(f"RESULT ret_roundtrip {timed(ret, 200 if quick else 2000) * 1e6:.3f} us", flush=True)

    def bcast(k):
        for _ in range(k):
            f = Future()
            g.bcast(f)
            f.get()

    print(f"RESULT bcast_reduce {timed(bcast, 200 if quick else 2000) * 1e6:.3f} us", flush=True)

    def allreduce(k):
        g.allreduce_rounds(k, awaitable=True).get()

    print(f"RESULT allreduce {timed(allreduce, 200 if quick else 2000) * 1e6:.3f} us", flush=True)

    a = Array(R, 64)
    charm.awaitCreation(a)

    def red(k):
        for _ in range(k):
            f = Future()
            a.red(f)
            assert f.get() == 64

    print(f"RESULT array_reduce64 {timed(red, 100 if quick else 1000) * 1e6:.3f} us", flush=True)

    def pmap(k):
        for _ in range(k):
            assert len(charm.pool.map(square, range(1000), chunksize=10)) == 1000

    print(f"RESULT pool_map1000_chunk10 {timed(pmap, 5 if quick else 50) * 1e6:.3f} us", flush=True)

    def pool_fib(k):
        for _ in range(k):
            assert pfib(12) == 144

    print(f"RESULT pool_fib12 {timed(pool_fib, 2 if quick else 10) * 1e6:.3f} us", flush=True)
    charm.exit(0)


charm.start(main)
