"""``python -m charmrun.start +p4 [options] prog.py [args]``: Charm4py's way to launch a
job, here charmrs's launcher (``python -m charmrs.run``, the same options and
behaviour). Programs that import ``charm4py`` get ``charmrs``."""

from __future__ import annotations

import sys
from typing import Optional

__all__ = ["start", "main"]


def start(args: Optional[list[str]] = None) -> int:
    """Launches the job ``args`` describe (the command line without the command
    itself: ``['+p4', 'prog.py', ...]``; ``sys.argv[1:]`` when empty or None), waits
    for it to end and returns its exit status, as Charm4py's ``charmrun.start.start``
    does."""
    from charmrs.run import launch

    return launch(list(args) if args else sys.argv[1:])


def main() -> None:
    """The ``charmrun`` command: ``start()`` with the command line, and its status as
    the process's exit status."""
    sys.exit(start())


if __name__ == "__main__":
    main()
