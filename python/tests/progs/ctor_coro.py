"""@coro constructors of group and array elements: they run until they first wait (then
the element exists: awaitCreation returns, and its methods run), the runtime resumes
them; remote collection creation through charm.thisProxy."""

from charmrs import Array, Chare, Future, Group, Reducer, charm, coro


class A(Chare):
    @coro
    def __init__(self):
        self.x = 100 + charm.myPe()

    def getVal(self):
        return self.x


class B(Chare):
    @coro
    def __init__(self, grp):
        self.before = True
        self.got = grp[self.thisIndex[0] % charm.numPes()].getVal(ret=True).get()

    @coro
    def report(self, f):
        # awaitCreation returns once every constructor ran to its first wait; this
        # one may still be waiting for its value.
        self.wait("hasattr(self, 'got')")
        self.contribute(self.got, Reducer.sum, f)


class T(Chare):
    def __init__(self, v=0):
        self.v = v

    def work(self, f, x):
        self.contribute(self.v + x, Reducer.sum, f)


def main(args):
    n = charm.numPes()
    g = Group(A)
    b = Array(B, 2 * n, args=[g])
    charm.awaitCreation(b)
    f = Future()
    b.report(f)
    want = sum(100 + (i % n) for i in range(2 * n))
    print("coro ctors:", f.get() == want)
    a = charm.thisProxy[n - 1].createArray(T, (2, 3), args=[5], ret=True).get()
    f = Future()
    a.work(f, 1)
    print("remote createArray:", f.get() == 6 * 6)
    grp = charm.thisProxy[0].createGroup(T, args=[1], ret=True).get()
    f = Future()
    grp.work(f, 0)
    print("remote createGroup:", f.get() == n)
    charm.exit()


charm.start(main)
