"""A plain (not @coro) method that waits for a future: a clear error, the job ends."""

from charm4py import Chare, Group, charm


class Impatient(Chare):
    def __init__(self):
        pass

    def where(self):
        return charm.myPe()

    def wait_here(self):
        self.thisProxy[0].where(ret=True).get()


def main(args):
    Group(Impatient)[charm.numPes() - 1].wait_here()


charm.start(main)
