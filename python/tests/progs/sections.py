"""Sections: split by function and by element lists, slicing, combine (of two chare
classes), sections of sections, multicasts (plain, awaitable, ret), section
reductions to a future and to a method, section allreduce, and the errors."""

from charmrs import Array, Chare, CharmError, Future, Group, Reducer, charm, coro


class Cell(Chare):
    def __init__(self):
        self.got = []

    def tag(self, t):
        self.got.append(t)

    def tags(self):
        return self.got

    def where(self):
        return (self.thisIndex, charm.myPe())

    def recv_sections(self, secs):
        self.sec = secs[self.thisIndex[0]]

    def reduce_row(self, f):
        i, j = self.thisIndex
        self.contribute(i * 100 + j, Reducer.sum, f, self.sec)

    def gather_row(self, target):
        self.contribute(self.thisIndex[1], Reducer.gather, target, self.sec)

    @coro
    def allreduce_row(self):
        total = self.allreduce(self.thisIndex[1], Reducer.max, self.sec).get()
        empty = self.allreduce(section=self.sec).get()
        return total, empty

    def outsider(self, sec):
        try:
            self.contribute(1, Reducer.sum, Future(), sec)
        except CharmError as e:
            return str(e)
        return "no error"


class Other(Chare):
    def where(self):
        return ("other", self.thisIndex)

    def tag(self, t):
        pass


class Main(Chare):
    def __init__(self):
        self.values = None

    def collect(self, values):
        self.values = values

    def gathered(self):
        return self.values


def by_row(obj):
    return obj.thisIndex[0]


def even_pe(obj):
    return [0] if obj.thisIndex % 2 == 0 else []


def both_parity(obj):
    # Every element in two sections: its row parity, and section 2.
    return [obj.thisIndex[0] % 2, 2]


def by_class(obj):
    return 0 if isinstance(obj, Other) else 1


def broken(obj):
    raise KeyError("no section for you")


def main(args):
    n = charm.numPes()
    a = Array(Cell, (4, 3))
    charm.awaitCreation(a)

    rows = charm.split(a, 4, by_row)
    assert len(rows) == 4
    # Charm4py's section attributes: issec, and a hashable id the same everywhere.
    assert a.issec is None and a.section is None and a[0, 0].issec is None
    assert all(sec.issec for sec in rows)
    assert len({sec.section for sec in rows}) == 4
    for r, sec in enumerate(rows):
        got = sorted(sec.where(ret=True).get())
        assert [idx for idx, _ in got] == [(r, c) for c in range(3)], got
    a.recv_sections(rows, awaitable=True).get()

    # Multicasts in order, to exactly the members.
    for t in range(5):
        rows[2].tag(t)
    rows[2].tag(5, awaitable=True).get()
    tags = a.tags(ret=True).get()
    assert tags == [list(range(6)) if k // 3 == 2 else [] for k in range(12)], tags

    # Section reductions: to a future, to a method, allreduce; several at once.
    futs = [Future() for _ in rows]
    for sec, f in zip(rows, futs):
        sec.reduce_row(f)
    for r, f in enumerate(futs):
        assert f.get() == sum(r * 100 + c for c in range(3))
    m = Chare(Main, onPE=n - 1)
    rows[1].gather_row(m.collect, awaitable=True).get()
    charm.waitQD()
    assert m.gathered(ret=True).get() == [0, 1, 2]
    results = rows[3].allreduce_row(ret=True).get()
    assert results == [(2, None)] * 3, results

    # Element lists; an element in several sections.
    secs = charm.split(a, 2, elems=[[(0, 0), (1, 1)], [(1, 1), (3, 2)]])
    assert sorted(i for i, _ in secs[0].where(ret=True).get()) == [(0, 0), (1, 1)]
    assert sorted(i for i, _ in secs[1].where(ret=True).get()) == [(1, 1), (3, 2)]
    three = charm.split(a, 3, both_parity)
    assert len(three[2].where(ret=True).get()) == 12
    assert len(three[0].where(ret=True).get()) == 6

    # Slicing: arrays and groups; a section of a section.
    sl = a[1:4, ::2]
    assert sorted(i for i, _ in sl.where(ret=True).get()) == [(r, c) for r in range(1, 4) for c in (0, 2)]
    assert a[1:4, ::2] is sl  # made once
    sub = charm.split(sl, 1, elems=[(3, 0), (0, 0)])[0]  # one section's indexes, flat
    assert [i for i, _ in sub.where(ret=True).get()] == [(3, 0)]
    g = Group(Cell)
    evens = charm.split(g, 1, even_pe)[0]
    assert sorted(i for i, _ in evens.where(ret=True).get()) == list(range(0, n, 2))
    assert sorted(i for i, _ in g[::2].where(ret=True).get()) == list(range(0, n, 2))
    assert sorted(i for i, _ in g[1:].where(ret=True).get()) == list(range(1, n))

    # Combine: two arrays of different classes, one multicast, then split again.
    o = Array(Other, 5)
    both = charm.combine(a, o)
    everyone = both.where(ret=True).get()
    assert len(everyone) == 12 + 5
    assert sum(1 for x in everyone if x[0] == "other") == 5
    both.tag(9, awaitable=True).get()
    halves = charm.split(both, 2, by_class)
    try:
        charm.split(both, 1, lambda obj: 0)
    except TypeError as e:
        assert "module-level function" in str(e), e
    else:
        raise AssertionError("a lambda section_func was accepted")
    assert len(halves[0].where(ret=True).get()) == 5
    assert len(halves[1].where(ret=True).get()) == 12

    # An empty section: calls on it complete at once.
    empty = charm.split(a, 1, elems=[[]])[0]
    empty.tag(1, awaitable=True).get()
    assert empty.where(ret=True).get() == []

    # Errors: a section function that raises, an element outside the section, a
    # section proxy used as an element proxy.
    try:
        charm.split(a, 1, broken)
    except CharmError as e:
        assert "no section for you" in str(e), e
    else:
        raise AssertionError("a raising section function was not reported")
    msg = a[0, 0].outsider(rows[3], ret=True).get()
    assert "not a member" in msg, msg
    try:
        rows[0][0, 0].tag(1)
    except CharmError as e:
        assert "section proxy" in str(e), e
    else:
        raise AssertionError("an element of a section proxy was called")
    # A group on some PEs: broadcasts and reductions over those PEs only.
    pes = sorted({0, n - 1})
    few = Group(Cell, onPEs=pes)
    assert sorted(i for i, _ in few.where(ret=True).get()) == pes
    print("sections: all checks passed on", n, "PEs", flush=True)
    charm.exit()


charm.start(main)
