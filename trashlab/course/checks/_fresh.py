"""The checks as installed: what a graded test cell runs, whatever an answer cell changed before it.

A test cell reloads this module, then asks it for its check module::

    import importlib
    import trashlab.course.checks._fresh as fresh
    fresh = importlib.reload(fresh)                 # this reloader as installed
    cluster_check = fresh.reloaded("cluster")       # the helpers every check is built from, then the check

so rebinding or monkeypatching a check, or a helper it is built from (``_answer``, ``_live``, ``_truth``),
in an answer cell earns nothing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

#: the modules every check is built from, in the order they import each other
HELPERS = ("_answer", "_live", "_truth")


def reloaded(check: str) -> ModuleType:
    """The check module ``trashlab.course.checks.<check>`` re-executed from its file, after its helpers."""
    from ...notebook.kernel import setup_kernel

    setup_kernel()  # a check cell that is a kernel's first use of trashlab still shows CheckFailed as one line
    package = __name__.rpartition(".")[0]
    for name in (*HELPERS, check):
        module = sys.modules.get(f"{package}.{name}") or importlib.import_module(f"{package}.{name}")
        module = importlib.reload(module)
    return module
