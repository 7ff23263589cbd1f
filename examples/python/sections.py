"""The manual's section examples, in one program: a section of the group elements on
even PEs (by a section function and by slicing), a 4 x 4 array split into 4 sections
with a section reduction, and two arrays combined into one section, then split into 4
cross-array sections.

    python -m charmrs.run +p4 examples/python/sections.py
"""

from charmrs import Array, Chare, Future, Group, Reducer, charm


class Test(Chare):
    def sayHi(self):  # noqa: N802 (the manual's name)
        print("Hello from", self.thisIndex, flush=True)

    def recvSecProxies(self, proxies):  # noqa: N802
        self.secProxy = proxies[sectionNo(self)]

    def doreduction(self, future):
        self.contribute(1, Reducer.sum, future, self.secProxy)


def evenPes(obj):  # noqa: N802
    return [0] if obj.thisIndex % 2 == 0 else []


def sectionNo(obj):  # noqa: N802
    return obj.thisIndex[0]  # the first index is the section number


def main(args):
    # Group elements on even PEs, twice: a section function, then slicing.
    g = Group(Test)
    secProxy = charm.split(g, 1, evenPes)[0]
    secProxy2 = g[::2]
    secProxy.sayHi(awaitable=True).get()
    secProxy2.sayHi(awaitable=True).get()

    # A 4 x 4 array in 4 sections; section 0 reduces.
    a = Array(Test, (4, 4))
    secProxies = charm.split(a, 4, sectionNo)
    a.recvSecProxies(secProxies, awaitable=True).get()
    f = Future()
    secProxies[0].doreduction(f)
    print("section 0 reduction:", f.get(), flush=True)  # 4

    # Two arrays combined; 4 sections across both.
    a1 = Array(Test, (4, 4))
    a2 = Array(Test, (4, 4))
    combined = charm.combine(a1, a2)
    combined.sayHi(awaitable=True).get()
    futures = [proxy.sayHi(awaitable=True) for proxy in charm.split(combined, 4, sectionNo)]
    charm.wait(futures)
    charm.exit()


charm.start(main)
