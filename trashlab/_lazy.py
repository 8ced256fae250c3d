"""Submodules that load on first use: ``trashlab.services.report.discover`` works after a bare ``import trashlab``."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Callable


def submodules(package: str) -> Callable[[str], ModuleType]:
    """A PEP 562 ``__getattr__`` for ``package``: ``package.<name>`` imports the submodule ``<name>`` on first use."""

    def __getattr__(name: str) -> ModuleType:
        if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")  # the import sets it as an attribute too
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
