"""Migration under load, with a checker: every PE sends numbered calls to random
elements of an array while elements keep moving (``proxy[i].migrate(pe)``), and
broadcasts run meanwhile. Each element checks that the calls of each sender arrive
once and in order, and the broadcasts too; then reductions, an allreduce and
``ret=True`` calls on moved elements, the ``migrated`` hook, attributes kept across
moves (numpy included), and the errors of migrating what cannot move."""

import random

import numpy as np

from charmrs import Array, Chare, CharmError, Future, Group, Reducer, charm, coro


class Cell(Chare):
    def __init__(self):
        self.last = {}
        self.got = 0
        self.bad = 0
        self.ticks = 0
        self.bad_ticks = 0
        self.moves = 0
        self.data = np.arange(10) * (self.thisIndex[0] + 1)

    def recv(self, sender, seq):
        if seq != self.last.get(sender, 0) + 1:
            self.bad += 1
        self.last[sender] = seq
        self.got += 1

    def tick(self, n):
        if n != self.ticks + 1:
            self.bad_ticks += 1
        self.ticks = n

    def migrated(self):
        self.moves += 1

    def check(self, fut):
        ok = bool((self.data == np.arange(10) * (self.thisIndex[0] + 1)).all())
        self.contribute([self.got, self.bad, self.ticks, self.bad_ticks, self.moves, int(ok), 1], Reducer.sum, fut)

    @coro
    def agree(self, want):
        return self.allreduce(self.thisIndex[0], Reducer.sum).get() == want

    def where(self):
        return charm.myPe()

    def keep_unpicklable(self):
        self.lock = __import__("threading").Lock()


class Sender(Chare):
    def run(self, cells, n, calls, hop_every):
        rng = random.Random(charm.myPe())
        seq = [0] * n
        for k in range(calls):
            i = rng.randrange(n)
            seq[i] += 1
            cells[i].recv(charm.myPe(), seq[i])
            if k % hop_every == 0:
                cells[rng.randrange(n)].migrate(rng.randrange(charm.numPes()))


class G(Chare):
    def try_migrate(self):
        self.migrate(0)


def main(args):
    mode = args[1] if len(args) > 1 else "check"
    n, calls, p = 16, 400, charm.numPes()
    cells = Array(Cell, n)
    if mode == "unpicklable":
        charm.awaitCreation(cells)
        cells[0].keep_unpicklable(awaitable=True).get()
        cells[0].migrate(p - 1)
        charm.waitQD()
        print("NOT REFUSED")
        exit(3)
    senders = Group(Sender)
    charm.awaitCreation(cells, senders)
    done = senders.run(cells, n, calls, 10, awaitable=True)
    ticks = 10
    for t in range(1, ticks + 1):
        cells.tick(t)
        if t % 3 == 0:
            for i in range(n):
                cells[i].migrate((i + t) % p)
    done.get()
    charm.waitQD()
    f = Future()
    cells.check(f)
    got, bad, tk, bad_tk, moves, ok, count = f.get()
    checks = {
        "every call once": got == calls * p,
        "calls in order": bad == 0,
        "every broadcast once": tk == ticks * n,
        "broadcasts in order": bad_tk == 0,
        "attributes kept": ok == n and count == n,
        "elements moved": p == 1 or moves > 0,
        "allreduce over moved elements": all(cells.agree(n * (n - 1) // 2, ret=True).get()),
    }
    # Every element to the last PE, then ret=True calls reach them there.
    for i in range(n):
        cells[i].migrate(p - 1)
    charm.waitQD()
    checks["ret=True on moved elements"] = all(cells[i].where(ret=True).get() == p - 1 for i in range(n))
    # Elements of a sparse array migrate too (inserted on chosen PEs, moved before and
    # after ckDoneInserting).
    sp = Array(Cell, ndims=1)
    charm.awaitCreation(sp)
    for i in range(n):
        sp.ckInsert(i * 5, onPE=i % p)
    for i in range(n):
        sp[i * 5].migrate((i + 1) % p)
        for x in range(1, 11):
            sp[i * 5].recv(-1, x)
    sp.tick(1)
    sp.ckDoneInserting()
    for i in range(n):
        sp[i * 5].migrate(p - 1 - i % p)
    charm.waitQD()
    f = Future()
    sp.check(f)
    got, bad, tk, bad_tk, moves, ok, count = f.get()
    checks["sparse: calls once and in order"] = got == 10 * n and bad == 0
    checks["sparse: the broadcast once"] = tk == n and bad_tk == 0 and count == n
    checks["sparse: elements moved"] = p == 1 or moves >= n
    # Errors.
    try:
        cells[0].migrate(p + 5, awaitable=True).get()
        checks["migrate to a PE that does not exist is refused"] = False
    except CharmError as e:
        checks["migrate to a PE that does not exist is refused"] = "the job has" in str(e)
    g = Group(G)
    try:
        g[0].try_migrate(awaitable=True).get()
        checks["a group element does not migrate"] = False
    except CharmError as e:
        checks["a group element does not migrate"] = "only elements of arrays migrate" in str(e)
    bad_checks = [k for k, v in checks.items() if not v]
    for k, v in checks.items():
        print(("ok: " if v else "MISMATCH: ") + k)
    print(f"migration: {len(bad_checks)} mismatches on {p} PEs")
    exit(0 if not bad_checks else 1)


charm.start(main)
