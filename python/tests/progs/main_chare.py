"""charm.start(ChareClass): the entry chare's constructor is a coroutine (it may wait
for futures), and Chare.wait(condition) suspends until the condition holds."""

from charmrs import Array, Chare, charm


class Worker(Chare):
    def __init__(self, main):
        self.main = main

    def ping(self):
        self.main.count_up(self.thisIndex[0])
        return self.thisIndex[0]


class Main(Chare):
    def __init__(self, args):
        self.count = 0
        workers = Array(Worker, 3, args=[self.thisProxy])
        print("ret in constructor:", workers[2].ping(ret=True).get() == 2)
        workers.ping()
        self.wait("self.count == 4")
        print("waited for count:", self.count)
        charm.exit(0)

    def count_up(self, i):
        self.count += 1


charm.start(Main)
