"""The thread-pool variables of numerical libraries in every process of the job."""

import os

from charmrs import Chare, Group, charm


class Report(Chare):
    def env(self):
        return [os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")]


def main(args):
    print("pools:", Group(Report).env(ret=True).get())
    exit()


charm.start(main)
