"""Futures whose errors the program never awaits but still holds when the job ends
(here in a garbage cycle: the caught exception's traceback holds the frame that holds
the list): warnings at the end, not a failed job (Charm4py ignores them)."""

from charmrs import charm


def bad(x):
    raise ValueError(f"task {x} fails")


def main(args):
    futs = [charm.pool.Task(bad, (i,), ret=True) for i in range(4)]
    try:
        print([f.get() for f in futs])
    except ValueError as e:
        print("caught:", e)
    charm.sleep(0.2)  # the other tasks' errors arrive
    print("held errors: done")
    exit()


charm.start(main)
