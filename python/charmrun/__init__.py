"""Charm4py's launcher names, for the commands and scripts written for Charm4py:
``python -m charmrun.start +p4 prog.py``, the ``charmrun`` command and
``charmrun.start.start([...])`` run charmrs's launcher (``charmrs.run``), with the
same options."""
