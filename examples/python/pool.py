"""The manual's pool examples: a parallel map with chunks, and recursive Fibonacci
whose tasks wait for the tasks they submit.

    python -m charmrs.run +p4 examples/python/pool.py
"""

from charmrs import charm, coro


def square(x):
    return x**2


@coro
def fib(n):
    if n < 2:
        return n
    return sum(charm.pool.map(fib, [n - 1, n - 2]))


def main(args):
    result = charm.pool.map(square, range(10), chunksize=2)
    print(result)  # [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    print("fibonacci(13)=", fib(13))
    charm.exit()


charm.start(main)
