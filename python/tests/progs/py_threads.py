"""A Python thread of the program runs beside the PEs: while a PE idles (it must not
keep the GIL while it waits for messages), while it runs Python code (the
interpreter's switch interval hands the GIL over), and while it handles a stream of
small messages (the GIL is taken per turn of the scheduler, and let go)."""

import threading
import time

from charmrs import Array, Chare, Future, charm

ticks = 0
stop = threading.Event()


def counter():
    global ticks
    while not stop.is_set():
        ticks += 1
        time.sleep(0.0005)


class Worker(Chare):
    def spin(self, seconds):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            pass
        return charm.myPe()

    def ping(self, n, done):
        if n == 0:
            done.send(True)
        else:
            self.thisProxy[self.thisIndex].ping(n - 1, done)


def grew(what, fn):
    before = ticks
    fn()
    after = ticks
    print(f"{what}: {'advanced' if after > before + 5 else 'STALLED'} ({after - before})", flush=True)


def main(args):
    threading.Thread(target=counter, daemon=True).start()
    a = Array(Worker, charm.numPes())
    charm.awaitCreation(a)
    grew("idle", lambda: charm.sleep(0.3))
    grew("busy Python", lambda: a[0].spin(0.3, ret=True).get())

    def stream():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            f = Future()
            a[0].ping(200, f)
            f.get()

    grew("messages", stream)
    stop.set()
    exit()


charm.start(main)
