"""Hello from every PE: a group broadcast, then a chain of array calls that ends the job."""

from charmrs import Array, Chare, Group, charm


class Hello(Chare):
    def __init__(self, greeting):
        self.greeting = greeting

    def say(self, sender):
        print(f"{self.greeting} from PE {charm.myPe()} of {charm.numPes()} (asked by PE {sender})", flush=True)


class Link(Chare):
    def __init__(self, n):
        self.n = n

    def hop(self, count):
        i = self.thisIndex[0]  # an array's index is a tuple
        if i == self.n - 1:
            print(f"the chain crossed {count + 1} elements", flush=True)
            charm.exit(0)
        else:
            self.thisProxy[i + 1].hop(count + 1)


def main(args):
    group = Group(Hello, args=["Hello"])
    group.say(charm.myPe())
    chain = Array(Link, 2 * charm.numPes(), args=[2 * charm.numPes()])
    chain[0].hop(0)


charm.start(main)
