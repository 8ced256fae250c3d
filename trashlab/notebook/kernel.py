"""What trashlab sets up inside a Jupyter kernel (and only there): log lines in the running cell and
trashlab errors shown as one red line instead of a traceback.

``import trashlab`` calls :func:`setup_kernel` only when IPython is already loaded (a kernel, an IPython
shell); a plain script or a spawned ``trashlab sim`` never imports IPython and gets the standard
library's logging (warnings on stderr, nothing configured).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

from .._compat import show_traceback_lines
from ..errors import TrashlabError

log = logging.getLogger("trashlab")


class _CellStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (in Jupyter: the running cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _short(shell: Any, etype: type, evalue: BaseException, tb: Any, tb_offset: Optional[int] = None) -> list:
    lines = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {evalue}"]
    show_traceback_lines(shell, etype, evalue, lines)
    return lines


def setup_kernel(shell: Any = None) -> bool:
    """In IPython/Jupyter: trashlab's log lines go to the running cell, its errors show as one line.

    Called by ``import trashlab`` when IPython is already running; call it yourself otherwise.
    Returns False (and changes nothing) outside IPython.
    """
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    if not any(isinstance(h, _CellStderr) for h in log.handlers):
        log.addHandler(_CellStderr())
        log.setLevel(logging.WARNING)
        log.propagate = False  # one line in the cell, not a second copy through the root logger
    shell.set_custom_exc((TrashlabError,), _short)
    return True
