"""Interactive mode: ``python -m charmrs.run +p4 ++interactive`` (or
``charm.start(interactive=True)``) runs a Python prompt on PE 0 of a running job.

The prompt runs in a coroutine of a chare on PE 0 (``self`` in the console), in the
namespace of ``__main__``, so ``Future.get()`` and ``charm.wait`` work at the prompt.
Chare classes defined at the prompt are sent to every other PE (their source runs
there), and so are ``import`` statements, so that the other PEs can create those
chares and run their methods. ``future()`` makes a ``Future`` and keeps it in ``_f``.
Remote ``exec``/``eval`` through ``charm.thisProxy`` are allowed in this mode. An
exception is printed and the session goes on (unless ``sys.excepthook`` is replaced);
``exit()`` or the end of the input ends the job.

Input is read by a thread of its own: while the prompt waits for a line, PE 0 keeps
running messages.
"""

from __future__ import annotations

import ast
import code
import queue
import sys
import threading
from typing import Any, Optional

# Absolute imports: this file also runs as the job's `__main__` (the launcher's
# `++interactive`), and the prompt's namespace is `__main__`'s: the package's names
# are there for the user, on every PE.
from charmrs import *  # noqa: F403
from charmrs import Chare, Future, charm

#: How long the prompt sleeps between looks at the input (PE 0 runs messages then).
POLL_SECS = 0.005


def _reader(lines: "queue.Queue[Optional[str]]") -> None:
    for line in sys.stdin:
        lines.put(line)
    lines.put(None)


class InteractiveConsole(Chare):
    """The chare whose coroutine runs the prompt (on PE 0)."""

    def __init__(self) -> None:
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._tty = sys.stdin.isatty()

    def _read(self, prompt: str) -> Optional[str]:
        if self._tty:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        while True:
            try:
                return self._lines.get_nowait()
            except queue.Empty:
                charm.sleep(POLL_SECS)

    def _broadcast(self, source: str, what: str) -> None:
        """Runs ``source`` in ``__main__`` on every other PE."""
        if charm.numPes() > 1:
            charm.thisProxy.rexec(source, "__main__", awaitable=True).get()
            print(f"Charm4py> Broadcasted {what}", flush=True)

    def _after(self, source: str, namespace: dict[str, Any]) -> None:
        """Sends chare definitions and imports of a statement just run to the other
        PEs."""
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return
        for node in tree.body:
            seg = ast.get_source_segment(source, node) or ""
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._broadcast(seg, "import statement")
            elif isinstance(node, ast.ClassDef):
                cls = namespace.get(node.name)
                if isinstance(cls, type) and issubclass(cls, Chare):
                    self._broadcast(seg, "Chare definition")

    def run(self) -> None:
        """The read-eval-print loop; ends the job at the end of the input."""
        import __main__

        ns = __main__.__dict__
        ns["self"] = self

        def future(num_vals: int = 1) -> Future:
            f = Future(num_vals)
            ns["_f"] = f
            return f

        ns.setdefault("future", future)
        console = code.InteractiveConsole(ns)
        threading.Thread(target=_reader, args=(self._lines,), daemon=True, name="charmrs-input").start()
        if self._tty:
            print(f"charmrs interactive mode: {charm.numPes()} PEs; exit() or Ctrl-D ends the job", flush=True)
        buf: list[str] = []
        while True:
            line = self._read("... " if buf else ">>> ")
            if line is None:
                break
            buf.append(line.rstrip("\n"))
            try:
                more = console.push(buf[-1])
            except SystemExit as e:
                charm.exit(e.code if isinstance(e.code, int) else 0)
                return
            if not more:
                source = "\n".join(buf)
                buf = []
                self._after(source, ns)
        charm.exit(0)


def main(args: list[str]) -> None:
    """The job's main function in interactive mode: the console's loop, run here (a
    coroutine on PE 0)."""
    InteractiveConsole().run()


if __name__ == "__main__":
    charm.start(interactive=True)
