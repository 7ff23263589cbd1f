"""Sparse arrays (Array(C, ndims=k), ckInsert, ckDoneInserting) and ArrayMap."""

from charmrs import Array, ArrayMap, Chare, CharmError, Future, Group, Reducer, charm


class Cell(Chare):
    def __init__(self, v=0):
        self.v = v
        self.got = []

    def poke(self, x):
        self.got.append(x)

    def info(self):
        return (self.thisIndex, self.v, self.got, charm.myPe())

    def spawn(self, k):
        for i in range(k):
            self.thisProxy.ckInsert((500, self.thisIndex[1] * 10 + i), args=[1], onPE=(charm.myPe() + i) % charm.numPes())

    def total(self, f):
        self.contribute(self.v, Reducer.sum, f)


class LastPe(ArrayMap):
    def procNum(self, index):
        return charm.numPes() - 1 - (sum(index) % charm.numPes())


def main(args):
    n = charm.numPes()
    a = Array(Cell, ndims=2)
    charm.awaitCreation(a)
    poked = a[3, 4].poke("early", awaitable=True)  # before the element exists: waits for it
    for i in range(10):
        a.ckInsert((i, i % 3), args=[i])
    a.ckInsert((3, 4), args=[100], onPE=n - 1)
    early = Future()
    a.total(early)  # before ckDoneInserting: completes after it, over every element
    a[0, 0].spawn(2, awaitable=True).get()
    a.ckDoneInserting()
    poked.get()
    infos = a.info(ret=True).get()
    assert len(infos) == 13, infos
    four = [x for x in infos if x[0] == (3, 4)][0]
    assert four[1:] == (100, ["early"], n - 1), four
    want = sum(range(10)) + 100 + 2
    assert early.get() == want, early.get()
    late = Future()
    a.total(late)
    assert late.get() == want
    try:
        a.ckInsert((99, 99))
    except CharmError as e:
        assert "after done_inserting" in str(e), e
    else:
        raise AssertionError("insert after ckDoneInserting was accepted")

    # ArrayMap: a dense array and a sparse one placed by procNum.
    m = Group(LastPe)
    charm.awaitCreation(m)
    d = Array(Cell, (3, 3), args=[1], map=m)
    for idx, v, got, pe in d.info(ret=True).get():
        assert pe == n - 1 - (sum(idx) % n), (idx, pe)
    s = Array(Cell, ndims=1, map=m)
    charm.awaitCreation(s)
    for i in range(6):
        s.ckInsert(i, args=[i])
    s.ckDoneInserting()
    for idx, v, got, pe in s.info(ret=True).get():
        assert pe == n - 1 - (idx[0] % n) and v == idx[0], (idx, v, pe)
    # Insertions right after creation (not awaited): they wait for it.
    q = Array(Cell, ndims=1)
    for i in range(4):
        q.ckInsert(i * 5, args=[i])
    q.ckDoneInserting()
    f = Future()
    q.total(f)
    assert f.get() == 6
    print("sparse: all checks passed on", n, "PEs", flush=True)
    charm.exit()


charm.start(main)
