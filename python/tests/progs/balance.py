"""AtSync load balancing: a ring of blocks exchanging values, the first blocks doing
more work; every few iterations they call ``AtSync`` and go on in
``resumeFromSync``. Odd blocks call ``setMigratable(False)`` in their constructor and
must stay on their first PE; ``migrated`` counts the moves of the others. Prints the
moves and a checksum that must not depend on the balancer."""

import time

from charmrs import Array, Chare, Future, Reducer, charm

N, ITERS, EVERY = 12, 12, 4


class Block(Chare):
    def __init__(self, done):
        self.done = done
        self.iter = 0
        self.v = float(self.thisIndex[0])
        self.got = []
        self.moves = 0
        # The iteration this block sent its value for: it computes an iteration once
        # both neighbours' values are in and its own went out (after AtSync the
        # neighbours may resume, and send, before it does).
        self.sent = -1
        self.first_pe = charm.myPe()
        self.stayed = True
        if self.thisIndex[0] % 2 == 1:
            self.setMigratable(False)

    def start(self):
        self.send()

    def send(self):
        self.sent = self.iter
        i = self.thisIndex[0]
        self.thisProxy[(i - 1) % N].halo(self.iter, self.v)
        self.thisProxy[(i + 1) % N].halo(self.iter, self.v)

    def halo(self, it, v):
        self.got.append((it, v))
        self.step()

    def step(self):
        mine = [x for x in self.got if x[0] == self.iter]
        if len(mine) < 2 or self.sent != self.iter:
            return
        self.got = [x for x in self.got if x[0] != self.iter]
        end = time.perf_counter() + (0.002 if self.thisIndex[0] < N // 3 else 0.0002)
        while time.perf_counter() < end:
            pass
        self.v = (self.v + mine[0][1] + mine[1][1]) / 3.0 + 1.0
        self.iter += 1
        if self.iter == ITERS:
            self.contribute([self.v, self.moves, int(self.stayed)], Reducer.sum, self.done)
        elif self.iter % EVERY == 0:
            self.AtSync()
        else:
            self.send()

    def resumeFromSync(self):
        if not self.migratable and charm.myPe() != self.first_pe:
            self.stayed = False
        self.send()
        self.step()

    def migrated(self):
        self.moves += 1


def main(args):
    done = Future()
    blocks = Array(Block, N, args=[done], useAtSync=True)
    blocks.start()
    v, moves, stayed = done.get()
    print(f"balance: checksum {v:.6f}, {moves} moves, non-migratables stayed: {stayed == N}")
    exit(0)


charm.start(main)
