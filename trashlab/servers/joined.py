"""Which class this machine joined: the file ``trashlab.classroom.join(...)`` writes and every broker reads at start.

A broker started after a join becomes a leaf node of the class hub (:mod:`.classroom`), also in a
notebook that never imported the classroom module; so the file is read here, below the broker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from .._secrets import redact


@dataclass(frozen=True)
class Seat:
    """What a join line says: the student, the client URL (None over WebSocket), the leaf URL, and whether
    the hub keeps readings (``keep=1``: brokers send each reading until the hub has it, :mod:`.keptfeed`)."""

    student: str
    client_url: Optional[str]
    leaf_url: str
    keep: bool = False

    def __repr__(self) -> str:  # never show the password
        return (f"Seat(student={self.student!r}, client_url={_masked(self.client_url)}, "
                f"leaf_url={_masked(self.leaf_url)}, keep={self.keep!r})")


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
    """The class this machine joined (see :func:`trashlab.classroom.join`), or None."""
    try:
        data = json.loads(join_file().read_text())
        return Seat(data["student"], data.get("client_url"), data["leaf_url"], bool(data.get("keep")))
    except (OSError, ValueError, KeyError):
        return None


#: a student's brokers log in to the hub as ``<student>.leaf`` (:mod:`trashlab.servers.classroom` explains why)
LEAF_SUFFIX = ".leaf"


def leaf_user(student: str) -> str:
    """The user name a student's brokers log in with as leaf nodes: ``s01.leaf``."""
    return student + LEAF_SUFFIX


def leaf_remote() -> Optional[str]:
    """The leaf URL a broker started now should connect to (None when no class is joined)."""
    seat = joined()
    if seat is None:
        return None
    parts = urlsplit(seat.leaf_url)  # joined with an earlier trashlab: log in as the leaf user all the same
    if parts.username == seat.student:
        return urlunsplit(parts._replace(netloc=f"{leaf_user(seat.student)}{parts.netloc[len(seat.student):]}"))
    return seat.leaf_url
