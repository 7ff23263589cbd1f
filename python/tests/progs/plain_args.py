"""Arguments of plain types (None, bool, int, float, str, bytes), which travel without
pickle, arrive with their values and exact types; what does not fit (ints of more
than 64 bits, subclasses, complex) is pickled and arrives as well."""

import enum
import math

from charmrs import Chare, Group, charm


class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


class Echo(Chare):
    def echo(self, *args):
        return [(type(a).__name__, a) for a in args]

    def kinds(self, a, b, c=None):
        return (a, b, c)


VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**63, -(2**70), 1.5, -0.0, math.inf,
    "", "héllo ✓", b"", b"\x00\xff" * 3000, Color.RED, MyStr("sub"), 3 + 4j,
]


def main(args):
    n = charm.numPes()
    g = Group(Echo)
    checks = {}
    for pe in range(n):
        got = g[pe].echo(*VALUES, ret=True).get()
        want = [(type(v).__name__, v) for v in VALUES]
        checks[f"values and types to PE {pe}"] = got == want
        checks[f"nan to PE {pe}"] = math.isnan(g[pe].echo(math.nan, ret=True).get()[0][1])
    checks["defaults"] = g[n - 1].kinds(1, "x", ret=True).get() == (1, "x", None)
    for name, good in checks.items():
        print(f"{name}: {good}")
    exit(0 if all(checks.values()) else 1)


charm.start(main)
