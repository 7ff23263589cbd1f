"""readonlies: set on PE 0 in main, read by every PE (in constructors and methods)."""

from charm4py import Chare, Group, charm
from charm4py import readonlies as ro


class Reader(Chare):
    def __init__(self):
        self.seen = ro.X

    def read(self):
        return (self.seen, ro.Y)


def main(args):
    ro.X = 5
    g = Group(Reader)
    ro.Y = [1, 2]  # set after the creation, before the call
    print("readonlies:", g.read(ret=True).get() == [(5, [1, 2])] * charm.numPes())
    charm.exit(0)


charm.start(main)
