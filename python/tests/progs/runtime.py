"""The charm object: keyword arguments, sleep, scheduleCallableAfter, quiescence
detection, wait/iwait, hosts and trees, a chare class as the entry point, exit()."""

import time

from charmrs import Chare, Future, Group, charm, coro


class Sleeper(Chare):
    def __init__(self):
        self.log = []

    def kw(self, a, b=2, *, c=3):
        return a + 10 * b + 100 * c

    @coro
    def nap(self, secs, tag):
        charm.sleep(secs)
        return tag

    def ping(self, n):
        if n > 0:
            self.thisProxy[(self.thisIndex + 1) % charm.numPes()].ping(n - 1)

    def quit(self, code):
        exit(code)


class Main(Chare):
    def __init__(self, args):
        self.thisProxy.go()

    @coro
    def go(self):
        n = charm.numPes()
        g = Group(Sleeper)
        charm.awaitCreation(g)
        print("kwargs:", g[n - 1].kw(1, c=5, ret=True).get() == 521)
        t0 = time.time()
        slow, fast = g[0].nap(0.3, "slow", ret=True), g[n - 1].nap(0.05, "fast", ret=True)
        order = [f.get() for f in charm.iwait([slow, fast])]
        print("iwait:", order == ["fast", "slow"], time.time() - t0 >= 0.3)
        charm.wait([slow, fast])
        f = Future()
        charm.scheduleCallableAfter(f, 0.1, args=["later"])
        print("scheduled:", f.get())
        g[0].ping(50)
        charm.waitQD()
        print("quiescence: True")
        print(
            "hosts:",
            charm.numHosts() == 1,
            charm.myHost() == 0,
            charm.getHostPes(0) == list(range(n)),
            charm.getHostFirstPe(0) == 0,
            charm.getHostNumPes(0) == n,
            charm.getPeHost(n - 1) == 0,
            charm.getPeHostRank(n - 1) == n - 1,
            charm.getNodeFirstPe(0) == 0,
        )
        parent, children = charm.getTopoTreeEdges(0, 0)
        subtrees = charm.getTopoSubtrees(0)
        print("tree:", parent is None, sorted(sum(subtrees, [])) == list(range(1, n)), set(children) == {t[0] for t in subtrees})
        g[n - 1].quit(3)


charm.start(Main)
