"""Names of the manual and of Charm4py's sources beside the main API: single-underscore
methods are entry methods, the old ``Ck*`` names, ``migrateMe``, ``Future.ready()``,
``charm.addReducer``, ``LBTurnInstrumentOn/Off`` (local and remote), ``Channel(...,
local=)``, ``Charm4pyError``, the options ``auto_flush_wait_queues`` and
``interactive.*``, the proxies' reprs, an exception sent to a future, a numpy int
as a group index, ``Reducer.max`` of (value, index) pairs, the profiling notice, and the error for a redefined reserved method.
"""

import numpy as np
from charm4py import Array, Channel, Chare, Charm4pyError, Future, Group, Reducer, charm, coro


class C(Chare):
    def _hidden(self, x):
        return x + 1

    def where(self):
        return charm.CkMyPe()

    def argmax(self, f):
        # (value, index) pairs: Reducer.max compares them whole (Charm4py's argmax).
        self.contribute((float(-abs(self.thisIndex - 1)), self.thisIndex), Reducer.max, f)

    @coro
    def chan(self, other):
        ch = Channel(self, other, local=self.thisProxy[self.thisIndex])
        ch.send(self.thisIndex)
        return ch.recv()


class M(Chare):
    def __init__(self):
        pass

    def where(self):
        return charm.myPe()


class G(Chare):
    def __init__(self):
        self.val = charm.myPe() * 10

    def mine(self):
        return self.thisProxy.ckLocalBranch() is self


def concat(contribs):
    return sorted(x for c in contribs for x in c)


def main(args):
    n = charm.numPes()
    checks = {}
    g = Group(C)
    charm.awaitCreation(g)
    checks["underscore method"] = g[n - 1]._hidden(1, ret=True).get() == 2
    # The manual's reprs (§5.2, §5.4): a single chare's proxy is an array proxy.
    a = Array(C, 2)
    s = Chare(C, onPE=n - 1)
    charm.awaitCreation(a, s)
    checks["proxy reprs"] = (
        repr(g).startswith("<__main__.CGroupProxy object at 0x")
        and repr(g[0]).startswith("<__main__.CGroupProxy object at 0x")
        and repr(a[1]).startswith("<__main__.CArrayProxy object at 0x")
        and repr(s).startswith("<__main__.CArrayProxy object at 0x")
    )
    checks["Ck names"] = charm.CkNumPes() == n and g[n - 1].where(ret=True).get() == n - 1
    f = Future()
    before = f.ready()
    f.send(3)
    checks["Future.ready"] = (before, f.ready(), f.get()) == (False, True, 3)
    # A future that receives an exception raises it; charm.wait leaves it to get().
    f = Future()
    f.send(KeyError("sent"))
    charm.wait([f])
    try:
        f.get()
        checks["exception sent to a future"] = False
    except KeyError as e:
        checks["exception sent to a future"] = e.args == ("sent",)
    checks["group element by a numpy int"] = g[np.int64(n - 1)].where(ret=True).get() == n - 1
    f = Future()
    g.argmax(f)
    checks["Reducer.max of (value, index)"] = tuple(f.get()) == max((float(-abs(p - 1)), p) for p in range(n))
    charm.addReducer(concat)
    checks["charm.addReducer"] = getattr(Reducer, "concat").name == "concat"
    charm.LBTurnInstrumentOn()
    charm.thisProxy.LBTurnInstrumentOff(awaitable=True).get()
    if n > 1:
        a, b = g[0].chan(g[1], ret=True), g[1].chan(g[0], ret=True)
        checks["Channel local="] = (a.get(), b.get()) == (1, 0)
        arr = Array(M, 2)
        charm.awaitCreation(arr)
        arr[0].migrateMe(n - 1, awaitable=True).get()
        checks["migrateMe"] = arr[0].where(ret=True).get() == n - 1
    from charmrs import CharmError

    checks["Charm4pyError"] = Charm4pyError is CharmError
    grp = Group(G)
    charm.awaitCreation(grp)
    ok = grp.ckLocalBranch().val == 0 and all(grp.mine(ret=True).get())
    try:
        Array(M, 2).ckLocalBranch()
        ok = False
    except Charm4pyError as e:
        ok &= "not a group" in str(e)
    checks["ckLocalBranch"] = ok
    opts = charm.options
    checks["options"] = opts.auto_flush_wait_queues is True and opts.interactive.verbose == 1

    class Bad(Chare):
        def contribute(self, *a):
            pass

    try:
        Group(Bad)
        checks["reserved method"] = False
    except Charm4pyError as e:
        checks["reserved method"] = "redefines reserved method 'contribute'" in str(e)
    for name, ok in checks.items():
        print(f"{name}: {ok}")
    print("compat names:", "all checks passed" if all(checks.values()) else "MISMATCH")
    exit(0 if all(checks.values()) else 1)


charm.options.profiling = True
charm.start(main)
