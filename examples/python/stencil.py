"""A 1-d heat stencil on a chare array: each element exchanges halos with its
neighbours every iteration (@when keeps a halo of the next iteration until its element
gets there) and an allreduce of the largest change decides when to stop.

    python3 -m charmrs.run +p4 examples/python/stencil.py [elements] [cells] [iterations]
"""

from charmrs import Array, Chare, Future, Reducer, charm, coro, when


class Block(Chare):
    def __init__(self, n, cells):
        self.n = n
        self.iter = 0
        self.u = [0.0] * (cells + 2)
        i = self.thisIndex[0]  # an array's index is a tuple
        if i == 0:
            self.u[0] = 1.0  # a hot left edge
        self.received = 0
        self.expected = (i > 0) + (i < n - 1)
        self.ready = Future()  # set when this iteration's halos are in

    @coro
    def run(self, iterations):
        change = 1.0
        while self.iter < iterations and change > 1e-6:
            self.send_halos()
            if self.expected:
                self.ready.get()
            self.received = 0
            new = self.u[:]
            for i in range(1, len(self.u) - 1):
                new[i] = (self.u[i - 1] + self.u[i] + self.u[i + 1]) / 3.0
            local = max(abs(a - b) for a, b in zip(new, self.u))
            self.u = new
            # No suspension between these two: a halo of the next iteration that runs
            # while this element waits in the allreduce finds the new future.
            self.iter += 1
            self.ready = Future()
            change = self.allreduce(local, Reducer.max).get()
        return (self.iter, change)

    def send_halos(self):
        i, p = self.thisIndex[0], self.thisProxy
        if i > 0:
            p[i - 1].halo(self.iter, "right", self.u[1])
        if i < self.n - 1:
            p[i + 1].halo(self.iter, "left", self.u[-2])

    @when("self.iter == it")
    def halo(self, it, side, value):
        if side == "left":
            self.u[0] = value
        else:
            self.u[-1] = value
        self.received += 1
        if self.received == self.expected:
            self.ready.send()


def main(args):
    n = int(args[1]) if len(args) > 1 else 8
    cells = int(args[2]) if len(args) > 2 else 16
    iterations = int(args[3]) if len(args) > 3 else 200
    blocks = Array(Block, n, args=[n, cells])
    results = blocks.run(iterations, ret=True).get()
    iters, change = results[0]
    print(f"stencil: {n} blocks of {cells} cells on {charm.numPes()} PEs: {iters} iterations, last change {change:.3e}")
    print("all elements agree:", all(r == results[0] for r in results))
    charm.exit(0)


charm.start(main)
