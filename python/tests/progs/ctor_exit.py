"""exit(7) in the constructor of one element of four, with calls already on their way
to it: the job ends with status 7 (the calls to the element go nowhere meanwhile)."""

from charmrs import Array, Chare, charm


class C(Chare):
    def __init__(self):
        if self.thisIndex == (1,):
            exit(7)

    def hi(self):
        pass


def main(args):
    a = Array(C, 4)
    a.hi()
    a[1].hi()
    charm.awaitCreation(a)
    print("main went on")
    charm.exit()


charm.start(main)
