"""Which class this machine joined: the file ``trashlab.join(...)`` writes and every broker reads at start.

A broker started after a join becomes a leaf node of the class hub (:mod:`.classroom`), also in a
notebook that never imported the classroom module; so the file is read here, below the broker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .._secrets import redact


@dataclass(frozen=True)
class Seat:
    """What a join line says: the student, the client URL (None over WebSocket) and the leaf URL."""

    student: str
    client_url: Optional[str]
    leaf_url: str

    def __repr__(self) -> str:  # never show the password
        return f"Seat(student={self.student!r}, client_url={_masked(self.client_url)}, leaf_url={_masked(self.leaf_url)})"


def _masked(url: Optional[str]) -> str:
    return repr(redact(url)) if url else "None"


def join_file() -> Path:
    """Where a joined class is remembered for every kernel and terminal (``TRASHLAB_CLASS_FILE`` overrides)."""
    override = os.environ.get("TRASHLAB_CLASS_FILE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "trashlab" / "class.json"


def joined() -> Optional[Seat]:
    """The class this machine joined (see :func:`trashlab.join`), or None."""
    try:
        data = json.loads(join_file().read_text())
        return Seat(data["student"], data.get("client_url"), data["leaf_url"])
    except (OSError, ValueError, KeyError):
        return None


def leaf_remote() -> Optional[str]:
    """The leaf URL a broker started now should connect to (None when no class is joined)."""
    seat = joined()
    return seat.leaf_url if seat is not None else None
