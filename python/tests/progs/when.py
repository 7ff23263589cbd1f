"""@when: calls wait until their condition holds (string, callable, attribute name),
including calls with ret=True; a condition that does not compile fails at decoration."""

from charmrs import coro, Chare, Group, charm, when


class Stage(Chare):
    def __init__(self):
        self.step = 0
        self.log = []

    @when("self.step == step")
    def advance(self, step, tag="x"):
        self.log.append((step, tag))
        self.step += 1
        return step

    @when(lambda self, n: len(self.log) >= n)
    def report(self, n):
        return list(self.log)

    @when("step")
    def old_style(self, value):
        return value * 2

    @coro
    @when("self.step >= need")
    def later(self, need, other):
        # Starts once the condition holds, then waits like any coroutine.
        return (self.step, len(other.report(0, ret=True).get()))


def main(args):
    g = Group(Stage)
    last = g[charm.numPes() - 1]
    rep = last.report(4, ret=True)
    futs = [last.advance(s, tag=f"t{s}", ret=True) for s in [3, 1, 2, 0]]
    print("order:", rep.get() == [(0, "t0"), (1, "t1"), (2, "t2"), (3, "t3")])
    print("returns:", [f.get() for f in futs] == [3, 1, 2, 0])
    print("old style:", last.old_style(4, ret=True).get() == 8)
    fresh = Group(Stage)
    late = fresh[0].later(2, fresh[charm.numPes() - 1], ret=True)
    for s in range(3):
        fresh[0].advance(s)
    step, seen = late.get()
    print("coro when:", step >= 2 and seen >= (2 if charm.numPes() == 1 else 0))
    try:

        class Bad(Chare):
            @when("self.x ==")
            def m(self):
                pass

    except SyntaxError as e:
        print("bad condition:", "does not compile" in str(e))
    charm.exit(0)


charm.start(main)
