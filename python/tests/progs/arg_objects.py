"""Futures and proxies as positional arguments (they travel beside the pickle) and
inside other arguments (pickled): the receiver gets working ones, equal to the
originals, on every PE; the future of an awaitable call is refused at the call."""

from charmrs import Array, Chare, CharmError, Future, Group, charm, coro, when


class Cell(Chare):
    def __init__(self):
        self.armed = False

    def ident(self):
        return ("cell", self.thisIndex, charm.myPe())


class Peer(Chare):
    def __init__(self):
        self.armed = False

    def ident(self):
        return ("peer", self.thisIndex, charm.myPe())

    def fill(self, f1, x, f2, nested):
        # Two futures by position, one inside a list.
        f1.send(x + 1)
        f2.send(x + 2)
        nested[0].send(x + 3)

    def multi(self, f):
        f.send(charm.myPe())

    @coro
    def via(self, grp, cells, cell, sec, nested, done):
        # Proxies by position (group, array, element, section) and inside a dict: the
        # same names whichever way they came, and they work.
        same = grp == nested["g"] and cells == nested["a"] and cell == nested["c"] and sec == nested["s"]
        who = [grp[charm.numPes() - 1].ident(ret=True).get(), cell.ident(ret=True).get()]
        done.send((same, who, sec.ident(ret=True).get(), len(cells.ident(ret=True).get())))

    def arm(self):
        self.armed = True

    @when("self.armed")
    def late(self, f, v):
        f.send(v)


def main(args):
    n = charm.numPes()
    peers = Group(Peer)
    cells = Array(Cell, 2 * n)
    charm.awaitCreation(peers, cells)
    checks = {}

    ok = True
    for pe in range(n):
        f1, f2, f3 = Future(), Future(), Future()
        peers[pe].fill(f1, 10 * pe, f2, [f3])
        ok &= [f1.get(), f2.get(), f3.get()] == [10 * pe + 1, 10 * pe + 2, 10 * pe + 3]
    checks["futures by position and nested"] = ok

    m = Future(num_vals=2 * n)
    for pe in list(range(n)) * 2:
        peers[pe].multi(m)
    checks["a multi-value future by position"] = sorted(m.get()) == sorted(list(range(n)) * 2)

    sec = cells[0 : 2 * n : 2]
    ok = True
    for pe in range(n):
        done = Future()
        nested = {"g": peers, "a": cells, "c": cells[2 * n - 1], "s": sec}
        peers[pe].via(peers, cells, cells[2 * n - 1], sec, nested, done)
        same, who, sec_ids, ncells = done.get()
        ok &= same and who == [("peer", n - 1, n - 1), ("cell", (2 * n - 1,), (2 * n - 1) * n // (2 * n))]
        ok &= sorted(i[1][0] for i in sec_ids) == list(range(0, 2 * n, 2)) and ncells == 2 * n
    checks["proxies by position and nested"] = ok

    f = Future()
    peers[n - 1].late(f, "waited")
    peers[n - 1].arm()
    checks["a future by position to a @when method"] = f.get() == "waited"

    try:
        peers[0].fill(peers[0].ident(awaitable=True), 1, Future(), [Future()])
        checks["an awaitable future is refused"] = False
    except CharmError as e:
        checks["an awaitable future is refused"] = "only explicit futures" in str(e)

    for name, good in checks.items():
        print(f"{name}: {good}")
    exit(0 if all(checks.values()) else 1)


charm.start(main)
