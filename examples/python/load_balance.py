"""Load balancing with AtSync: a ring of blocks exchanging their values every
iteration, where the first third of the blocks work ten times longer than the rest
(and all start on the first PEs). Every few iterations each block calls
``self.AtSync()``; the balancer chosen on the command line moves blocks by the time
they measured, then calls ``resumeFromSync`` on every block. Compare:

    python3 -m charmrs.run +p2 examples/python/load_balance.py
    python3 -m charmrs.run +p2 examples/python/load_balance.py +balancer GreedyLB +LBDebug 1

Optional arguments: [blocks] [iterations] [AtSync every] (defaults 12 40 10).
"""

import time

from charmrs import Array, Chare, Future, Reducer, charm


class Block(Chare):
    def __init__(self, n, iters, every, done):
        self.n, self.iters, self.every, self.done = n, iters, every, done
        self.iter = 0
        self.v = float(self.thisIndex[0])
        self.inbox = []  # neighbours' values: (iteration, value)
        self.sent = -1  # the iteration this block sent its value for
        self.moves = 0

    def send(self):
        self.sent = self.iter
        i = self.thisIndex[0]
        self.thisProxy[(i - 1) % self.n].value(self.iter, self.v)
        self.thisProxy[(i + 1) % self.n].value(self.iter, self.v)

    def value(self, it, v):
        self.inbox.append((it, v))
        self.step()

    def step(self):
        # After AtSync, neighbours may resume (and send) before this block does: an
        # iteration runs once both values are in and this block's own went out.
        mine = [v for it, v in self.inbox if it == self.iter]
        if len(mine) < 2 or self.sent != self.iter:
            return
        self.inbox = [(it, v) for it, v in self.inbox if it != self.iter]
        work = 0.004 if self.thisIndex[0] < self.n // 3 else 0.0004
        end = time.perf_counter() + work
        while time.perf_counter() < end:
            pass
        self.v = (self.v + sum(mine)) / 3.0 + 1.0
        self.iter += 1
        if self.iter == self.iters:
            self.contribute([self.v, self.moves], Reducer.sum, self.done)
        elif self.iter % self.every == 0:
            self.AtSync()
        else:
            self.send()

    def resumeFromSync(self):
        self.send()
        self.step()

    def migrated(self):
        self.moves += 1


def main(args):
    n, iters, every = [int(a) for a in args[1:4]] + [12, 40, 10][len(args[1:4]) :]
    done = Future()
    blocks = Array(Block, n, args=[n, iters, every, done], useAtSync=True)
    t0 = time.perf_counter()
    blocks.send()
    checksum, moves = done.get()
    t = time.perf_counter() - t0
    print(f"load_balance: {n} blocks on {charm.numPes()} PEs, {1e3 * t / iters:.2f} ms per iteration, "
          f"{moves} moves, checksum {checksum:.4f}")
    exit()


charm.start(main)
