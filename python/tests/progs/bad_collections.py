"""Errors of sparse arrays and ArrayMaps, each ending the job with a clear message:
``range`` (procNum returns a PE that does not exist), ``raises`` (procNum raises),
``ctor`` (the constructor of an inserted element raises)."""

import sys

from charmrs import Array, ArrayMap, Chare, Group, charm


class Far(ArrayMap):
    def procNum(self, index):
        return charm.numPes() + 5


class Broken(ArrayMap):
    def procNum(self, index):
        raise KeyError("no place for this one")


class Cell(Chare):
    def __init__(self, v=0):
        if v < 0:
            raise ValueError("negative cell")


def main(args):
    mode = args[1]
    if mode in ("range", "raises"):
        m = Group(Far if mode == "range" else Broken)
        charm.awaitCreation(m)
        a = Array(Cell, 4, map=m)
        charm.awaitCreation(a)
    else:
        a = Array(Cell, ndims=1)
        charm.awaitCreation(a)
        a.ckInsert(3, args=[-1])
        a.ckDoneInserting()
        charm.sleep(5)
    print("not reached", flush=True)
    charm.exit()


charm.start(main)
