"""The mpi4py side of ``compare.py``: the same scenarios as ``bench_prog.py`` where
MPI has the operation, on 2 ranks (``mpirun -np 2``). Prints ``RESULT name value unit``
lines with the names of ``bench_prog.py``.

- ``pingpong_<size>``: one-way latency of a blocking send/recv ping-pong of the same
  payloads (bytes objects through the pickle-based ``send``/``recv`` for 0 B and 1 KiB,
  numpy float64 arrays through the buffer-based ``Send``/``Recv`` for the others);
- ``bcast_reduce``: ``bcast`` from rank 0 then ``reduce`` of one number to rank 0 (a
  round, as the group broadcast + reduction of ``bench_prog.py``);
- ``allreduce``: ``allreduce`` of one number.
"""

import sys
import time

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
quick = "--quick" in sys.argv


def timed(fn, reps):
    fn(max(1, reps // 10))
    comm.Barrier()
    t0 = time.perf_counter()
    fn(reps)
    return (time.perf_counter() - t0) / reps


payloads = [
    ("0B", b"", 2000),
    ("1KiB", b"x" * 1024, 2000),
    ("64KiB", np.ones(8192), 500),
    ("1MiB", np.ones(131072), 50),
    ("8MiB", np.ones(1048576), 10),
]
for name, payload, reps in payloads:
    reps = max(2, reps // 10) if quick else reps
    if isinstance(payload, bytes):

        def rounds(n, payload=payload):
            for _ in range(n):
                if rank == 0:
                    comm.send(payload, dest=1)
                    comm.recv(source=1)
                else:
                    comm.send(comm.recv(source=0), dest=0)

    else:
        buf = np.empty_like(payload)

        def rounds(n, payload=payload, buf=buf):
            for _ in range(n):
                if rank == 0:
                    comm.Send(payload, dest=1)
                    comm.Recv(buf, source=1)
                else:
                    comm.Recv(buf, source=0)
                    comm.Send(buf, dest=0)

    t = timed(rounds, reps)
    if rank == 0:
        print(f"RESULT pingpong_{name} {t / 2 * 1e6:.3f} us", flush=True)


def bcast_reduce(n):
    for _ in range(n):
        comm.bcast(0, root=0)
        comm.reduce(1, op=MPI.SUM, root=0)


t = timed(bcast_reduce, 200 if quick else 2000)
if rank == 0:
    print(f"RESULT bcast_reduce {t * 1e6:.3f} us", flush=True)


def allreduce(n):
    for _ in range(n):
        comm.allreduce(1, op=MPI.SUM)


t = timed(allreduce, 200 if quick else 2000)
if rank == 0:
    print(f"RESULT allreduce {t * 1e6:.3f} us", flush=True)
