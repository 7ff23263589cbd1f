"""charmrs.ray (Charm4py's Ray-style API), as a Charm4py program imports it: remote
functions (nested), actors (state, order of calls, handles passed around), object
references as arguments across PEs, put, get, wait (num_returns, timeout), and
failures raised at ray.get."""

import charm4py.ray as ray_module
from charm4py import charm, ray


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("cannot travel")
        self.lock = __import__("threading").Lock()


@ray.remote
def fib(n):
    if n < 2:
        return n
    return ray.get(fib.remote(n - 1)) + ray.get(fib.remote(n - 2))


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def where():
    return charm.myPe()


@ray.remote
def slow(x, secs):
    charm.sleep(secs)  # suspends the task, not its PE
    return x


@ray.remote
def fails(kind):
    if kind == "plain":
        raise ValueError("task failed")
    raise Unpicklable()


@ray.remote
def use_actor(counter, k):
    return ray.get(counter.incr.remote(k))


@ray.remote
class Counter:
    def __init__(self, start):
        self.value = start
        self.log = []

    def incr(self, k):
        self.value += k
        self.log.append(k)
        return self.value

    def history(self):
        return self.log, charm.myPe()

    def boom(self):
        raise KeyError("actor failed")

    def unpicklable(self):
        raise Unpicklable()


def main(args):
    ray.init()
    n = charm.numPes()
    checks = {"the alias gives one module": ray_module is ray}
    checks["nested remote functions"] = ray.get(fib.remote(10)) == 55
    refs = [add.remote(i, ray.put(i)) for i in range(20)]
    checks["references as arguments"] = ray.get(refs) == [2 * i for i in range(20)]
    pes = set(ray.get([where.remote() for _ in range(50 * n)]))
    checks["tasks run on PEs"] = pes <= set(range(n)) and len(pes) >= 1

    counters = [Counter.remote(100 * i) for i in range(n)]
    last = [counters[i % n].incr.remote(i) for i in range(4 * n)]
    ray.get(last)
    hist = ray.get([c.history.remote() for c in counters])
    checks["actor calls in order, round robin"] = all(
        log == [k for k in range(4 * n) if k % n == i] and pe == i for i, (log, pe) in enumerate(hist)
    )
    chain = add.remote(counters[0].incr.remote(0), 1)  # an actor's result into a task
    checks["an actor's result as a task argument"] = ray.get(chain) == ray.get(counters[0].incr.remote(0)) + 1
    checks["actor handles passed to tasks"] = sorted(ray.get([use_actor.remote(counters[-1], 1) for _ in range(5)]))[-1] == ray.get(counters[-1].incr.remote(0))

    fast, slow_ref = add.remote(1, 1), slow.remote(7, 1.0)
    ready, not_ready = ray.wait([slow_ref, fast], num_returns=1)
    checks["wait: the first ready"] = ready == [fast] and not_ready == [slow_ref]
    ready, not_ready = ray.wait([slow_ref], timeout=0.05)
    checks["wait: timeout"] = ready == [] and not_ready == [slow_ref]
    ready, _ = ray.wait([slow_ref, fast], num_returns=2)
    checks["wait: all"] = ready == [slow_ref, fast] and ray.get(slow_ref) == 7

    # An exception that cannot be pickled arrives as a CharmError with its report when
    # the task ran on another PE, as itself when it ran here.
    for kind, want in [("plain", ["task failed"]), ("unpicklable", ["cannot be pickled", "cannot travel"])]:
        try:
            ray.get(fails.remote(kind))
            checks[f"a {kind} failure raised at get"] = False
        except Exception as e:
            checks[f"a {kind} failure raised at get"] = any(w in str(e) for w in want)
    if n > 1:  # the last actor is on another PE
        try:
            ray.get(counters[-1].unpicklable.remote())
            checks["an unpicklable failure from another PE"] = False
        except Exception as e:
            checks["an unpicklable failure from another PE"] = "cannot be pickled" in str(e) and "cannot travel" in str(e)
    try:
        ray.get(counters[0].boom.remote())
        checks["an actor failure raised at get"] = False
    except KeyError as e:
        checks["an actor failure raised at get"] = "actor failed" in str(e)
    checks["the actor goes on after a failure"] = ray.get(counters[0].incr.remote(1)) > 0
    try:
        counters[0].incr(1)
        checks["direct calls refused"] = False
    except TypeError as e:
        checks["direct calls refused"] = ".remote()" in str(e)

    for name, good in checks.items():
        print(f"{name}: {good}")
    exit(0 if all(checks.values()) else 1)


charm.start(main)
