"""The launcher: ``python -m charmrs.run +p4 [++ppn K] [++nodelist F] prog.py args...``.

Takes the options of ``charmrs-run`` (the same code) and runs ``prog.py`` with this
interpreter in every process of the job.
"""

from __future__ import annotations

import sys

from . import _charmrs


def main() -> int:
    """Runs the job of the command line; returns its exit status."""
    return _charmrs.launch(sys.argv[1:], sys.executable)


if __name__ == "__main__":
    sys.exit(main())
