"""The ``charm`` object: starts the runtime, tells where code runs, waits."""

from __future__ import annotations

import sys
from typing import Any, Callable

from . import _charmrs, _glue
from .exceptions import CharmError


class _Charm:
    """The runtime facade (Charm4py's ``charm``). Nothing starts before ``start``."""

    def start(self, main: Callable[[list[str]], Any]) -> None:
        """Starts the runtime and runs ``main(args)`` as a coroutine on PE 0 of the
        job; ends the process with the job's exit code when the job ends."""
        argv = list(sys.argv)
        code = _charmrs.start(_glue.main(main, argv), argv)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(code)

    def myPe(self) -> int:  # noqa: N802 (Charm4py's name)
        """This PE's number."""
        return _charmrs.my_pe()

    def numPes(self) -> int:  # noqa: N802
        """The number of PEs of the job."""
        return _charmrs.num_pes()

    def exit(self, exit_code: int = 0) -> None:
        """Ends the job with ``exit_code`` once the current method returns."""
        _charmrs.exit(exit_code)

    def awaitCreation(self, *proxies: Any) -> None:  # noqa: N802
        """Suspends the current coroutine until every element of the collections of
        ``proxies`` (made by this coroutine) is constructed."""
        for p in proxies:
            created = getattr(p, "_created", None)
            if created is None:
                raise CharmError(f"{p!r} was not created here: awaitCreation takes the proxies that creation returned")
            created.get()


charm = _Charm()
