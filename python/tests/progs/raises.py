"""A method that raises, with nobody waiting: the job must end non-zero with the traceback."""

from charmrs import Chare, Group, charm


class Bad(Chare):
    def __init__(self):
        pass

    def boom(self):
        if charm.myPe() == charm.numPes() - 1:
            raise ValueError("boom on the last PE")


def main(args):
    Group(Bad).boom()


charm.start(main)
