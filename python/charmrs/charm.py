"""The ``charm`` object: starts the runtime and tells where code runs."""

from __future__ import annotations

import sys
from typing import Any, Callable

from . import _charmrs


class _Charm:
    """The runtime facade (Charm4py's ``charm``). Nothing starts before ``start``."""

    def start(self, main: Callable[[list[str]], Any]) -> None:
        """Runs ``main(args)`` on PE 0 of the job; ends the process with the job's code."""
        argv = list(sys.argv)
        code = _charmrs.start(lambda: main(argv), argv)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(code)

    def myPe(self) -> int:  # noqa: N802 (Charm4py's name)
        """This PE's number."""
        return _charmrs.my_pe()

    def numPes(self) -> int:  # noqa: N802
        """The number of PEs of the job."""
        return _charmrs.num_pes()

    def exit(self, code: int = 0) -> None:
        """Ends the job with ``code`` once the current method returns."""
        _charmrs.exit(code)


charm = _Charm()
