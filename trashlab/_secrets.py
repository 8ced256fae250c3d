"""Keeping passwords where they belong: one redaction for every text shown, one way to write a private file.

A password never reaches a command line (children get URLs by environment, nats-server its credentials
in a config file), a log line, a repr or an error message (:func:`redact`), or a file that group or other
may read (:func:`write_private` in folders made by :func:`private_dir`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Iterable, Union

#: what a hidden password reads as
HIDDEN = "***"

# scheme://user:password@  or  scheme://token@   (no '/', '@' or space in the user part)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:'\"]*)(?P<password>:[^/@\s'\"]*)?@")
# a nats-server config's   password: "..."   token: "..."   pass: "..."  (and JSON's "pass":"...")
_CONFIG = re.compile(r"(?P<key>\b(?:password|pass|token)\"?\s*[:=]\s*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,})\]]+)")


def _url(m: "re.Match[str]") -> str:
    if m.group("password") is None:  # a token alone: all of it is the secret
        return f"{m.group('scheme')}{HIDDEN}@" if m.group("user") else m.group(0)
    return f"{m.group('scheme')}{m.group('user')}:{HIDDEN}@"


def _config(m: "re.Match[str]") -> str:
    value = m.group("value")
    if value == "None":  # a repr's "no password"
        return m.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{m.group('key')}{quote}{HIDDEN}{quote}"


def redact(text: object) -> str:
    """``text`` with every password hidden: ``nats://user:***@host:port``, ``nats://***@host`` (a token),
    ``password: "***"`` (config files). The one redaction for log lines, reprs, errors and printed output."""
    return _CONFIG.sub(_config, _USERINFO.sub(_url, str(text)))


def redact_all(texts: Iterable[object]) -> "list[str]":
    """Each of ``texts`` redacted (an argv, a list of URLs)."""
    return [redact(t) for t in texts]


def private_dir(path: Union[str, Path], *, tighten: bool = True) -> Path:
    """``path`` as a folder only its owner may enter (0700), made if missing. An existing one is tightened
    when it is trashlab's own (``tighten``) and this user's; a folder the user named keeps its mode (the
    files written into it are 0600 anyway)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if tighten and stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
        path.chmod(0o700)
    return path


def write_private(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600), whole or not at all (temp file + rename:
    a reader never sees half of it, nor a moment when it is readable by others)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)  # O_CREAT's mode is not applied to a leftover temp file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
