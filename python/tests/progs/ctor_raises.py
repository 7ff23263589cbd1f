"""A constructor raises while main holds the proxy and waits for something else: the
job must end with the traceback, not hang."""

from charmrs import Array, Chare, Future, charm


class T(Chare):
    def __init__(self):
        raise ValueError("boom in the constructor")


def main(args):
    a = Array(T, 4)  # held, never awaited
    Future().get()  # would wait forever
    print(a)


charm.start(main)
