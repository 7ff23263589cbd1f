"""charm.thisProxy: remote myPe, updateGlobals and eval (with remote_exec), and
charm.thisProxy[0].exit as a reduction's callback."""

import sys

from charmrs import Chare, CharmError, Group, charm

MY_GLOBAL = 0
charm.options.remote_exec = "--no-exec" not in sys.argv


class Last(Chare):
    def __init__(self):
        pass

    def finish(self):
        self.contribute(None, None, charm.thisProxy[0].exit)


def main(args):
    n = charm.numPes()
    print("remote myPe:", charm.thisProxy[n - 1].myPe(ret=True).get() == n - 1)
    try:
        charm.thisProxy.updateGlobals({"MY_GLOBAL": 1234}, awaitable=True).get()
        print("globals:", charm.thisProxy.eval("MY_GLOBAL", ret=True).get() == [1234] * n)
        charm.thisProxy.rexec("MY_GLOBAL = 99", awaitable=True).get()
        print("rexec:", charm.thisProxy.eval("MY_GLOBAL", ret=True).get() == [99] * n)
    except CharmError as e:
        print("refused:", "remote_exec" in str(e))
        charm.exit(5)
        return
    Group(Last).finish()


charm.start(main)
