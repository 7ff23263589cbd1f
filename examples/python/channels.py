"""The manual's channels example: every element of an array streams data to both of
its neighbours through channels and receives with charm.iwait, for NUM_ITER steps.

    python3 -m charmrs.run +p4 examples/python/channels.py
"""

from charmrs import Array, Channel, Chare, charm, coro

NUM_ITER = 100


class A(Chare):
    def __init__(self, numchares):
        myidx = self.thisIndex[0]
        neighbors = [self.thisProxy[(myidx + 1) % numchares], self.thisProxy[(myidx - 1) % numchares]]
        self.channels = [Channel(self, remote=nb) for nb in neighbors]

    @coro
    def work(self):
        x, y, z = self.thisIndex[0], 0.0, 0
        for i in range(NUM_ITER):
            for ch in self.channels:
                ch.send(x, y, z)
            for ch in charm.iwait(self.channels):
                x2, y2, z2 = ch.recv()
                y += x2
                z += 1
        return y, z


def main(args):
    numchares = charm.numPes() * 8
    array = Array(A, numchares, args=[numchares])
    results = array.work(ret=True).get()
    assert all(z == 2 * NUM_ITER for _, z in results)
    print(f"channels: {numchares} chares exchanged {NUM_ITER} steps with both neighbours")
    charm.exit(0)


charm.start(main)
