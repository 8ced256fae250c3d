"""Where autograde runs a student's code: a bubblewrap sandbox that can write only a private folder.

A submission is untrusted code: its answer cells run in nbgrader's kernel, and the judge (``judge.py``) runs
them again. Both run under ``bwrap`` (Debian's ``bubblewrap``, unprivileged: it works for an instructor on a
laptop and as root in CI):

- the whole file system read-only (``--ro-bind / /``): the trashlab package (installed editable from the
  instructor's checkout), the course folder, ``course/gradebook.db``, ``/tmp`` and the instructor's home
  cannot be written; the one writable folder is the submission's private copy
  (its ``HOME``, its working folder, trashlab's state folder);
- a user namespace in which it is ``nobody`` with no capabilities (as root too: no remount, no ptrace);
- its own network namespace (only its own loopback: the nats-servers a notebook starts are private, no
  port can collide with another grader's, nothing reaches the network), its own PID namespace (everything
  it started dies with it) and its own session.

No bubblewrap (macOS, Windows, a Linux without user namespaces): autograde refuses with one line naming the
fix, unless the instructor passes ``--no-sandbox`` (grading with the instructor's own rights: only for
submissions they trust).

``python -m trashlab_instructor.sandbox kernel -- CMD...`` is the launcher nbgrader's kernels start through
(a kernel spec ``python3`` in a private ``JUPYTER_PATH`` folder): it copies the submission's folder (the
kernel's working folder, inside course/) to a private one, mounts that copy over it, and runs CMD sandboxed.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from trashlab.errors import TrashlabError

BWRAP = "bwrap"
#: The one line a machine without a sandbox gets.
NO_SANDBOX = ("autograde runs each submission in a sandbox, and bubblewrap is not usable here ({why}): install it "
              "(`sudo apt-get install bubblewrap`), or pass --no-sandbox to grade with your own rights "
              "(only for submissions you trust)")


class SandboxUnavailable(TrashlabError):
    """bubblewrap is missing or cannot create its namespaces here."""


@functools.lru_cache(maxsize=1)
def problem() -> Optional[str]:
    """Why no sandbox can be made here (None: bubblewrap works)."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap is Linux only, this is {sys.platform}"
    bwrap = shutil.which(BWRAP)
    if bwrap is None:
        return "no `bwrap` on PATH"
    try:
        proc = subprocess.run([*prefix(Path(tempfile.gettempdir())), "true"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`bwrap` did not run: {e}"
    if proc.returncode != 0:
        return f"`bwrap` failed: {(proc.stderr.strip().splitlines() or ['exit %d' % proc.returncode])[-1]}"
    return None


def require(sandbox: bool) -> None:
    """Raise SandboxUnavailable (one line naming the fix) when ``sandbox`` is asked for and cannot be made."""
    if sandbox and problem() is not None:
        raise SandboxUnavailable(NO_SANDBOX.format(why=problem()))


def prefix(home: Path, writable: Sequence[Path] = (), over: Optional[tuple] = None) -> List[str]:
    """The ``bwrap ... --`` words that run a command read-only everywhere but ``home`` (its HOME, working folder,
    TMPDIR and trashlab state folder) and ``writable``; ``over=(copy, path)`` mounts a private copy over ``path``."""
    home = Path(home)
    # /tmp stays read-only like the rest (a checkout or venv may live there); TMPDIR is the private folder
    cmd = [shutil.which(BWRAP) or BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for folder in (home, *writable):
        cmd += ["--bind", str(folder), str(folder)]
    if over is not None:
        cmd += ["--bind", str(over[0]), str(over[1])]
    cmd += ["--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session",
            "--setenv", "HOME", str(home), "--setenv", "TMPDIR", str(home / "tmp"),
            "--setenv", "TRASHLAB_STATE_DIR", str(home / "state"), "--setenv", "XDG_RUNTIME_DIR", str(home / "run"),
            "--setenv", "MPLCONFIGDIR", str(home / "mpl"), "--setenv", "IPYTHONDIR", str(home / "ipython"),
            # ipykernel polls its parent's PID, which means nothing in the PID namespace: 1 turns the poll off
            # (and the "started without a parent" banner), the kernel dies with bwrap (--die-with-parent)
            "--setenv", "JPY_PARENT_PID", "1",
            "--chdir", str(over[1] if over is not None else home), "--"]
    return cmd


def private_home(prefix_: str = "trashlab-sandbox-") -> Path:
    """A fresh 0700 folder (and its tmp/state/run subfolders), removed when this process exits."""
    home = Path(tempfile.mkdtemp(prefix=prefix_))
    for sub in ("tmp", "state", "run"):
        (home / sub).mkdir(mode=0o700)
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


# ----- nbgrader's kernels --------------------------------------------------------------------------------
def kernel_spec_folder() -> Path:
    """A private Jupyter data folder whose kernel spec ``python3`` starts ipykernel through the sandbox launcher
    (put it first in ``JUPYTER_PATH``: it then wins over the installed ``python3``)."""
    folder = Path(tempfile.mkdtemp(prefix="trashlab-kernelspec-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    homes = folder / "homes"  # each kernel's private home, inside this folder: gone with it, even after a SIGKILL
    homes.mkdir(mode=0o700)
    argv = [sys.executable, "-m", "trashlab_instructor.sandbox", "kernel", "--homes", str(homes), "--",
            sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    # interrupts go as messages: a signal to bwrap would not reach the kernel in its own session
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3 (trashlab sandbox)",
                                                  "language": "python", "interrupt_mode": "message",
                                                  "metadata": {"debugger": False}}))
    return folder


def _kernel(cmd: Sequence[str], homes: Optional[str] = None) -> int:
    """Run a kernel sandboxed: its working folder (inside course/) replaced by a private copy, its IPC sockets'
    folder writable."""
    connection = Path(cmd[cmd.index("-f") + 1]) if "-f" in cmd else None
    writable = []
    if connection is not None:
        info = json.loads(connection.read_text())
        if info.get("transport") == "ipc":
            writable.append(Path(info["ip"]).parent)  # the kernel creates its sockets there
    home = Path(tempfile.mkdtemp(prefix="trashlab-kernel-", dir=homes))  # autograde removes ``homes`` at its exit
    for sub in ("tmp", "state", "run"):
        (home / sub).mkdir(mode=0o700)
    work = home / "work"
    here = Path.cwd()
    shutil.copytree(here, work, symlinks=True)
    try:
        return subprocess.call([*prefix(home, writable, over=(work, here)), *cmd])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m trashlab_instructor.sandbox kernel [--homes DIR] -- CMD...``: run a kernel in the sandbox."""
    args = list(sys.argv[1:] if argv is None else argv)
    homes = None
    if len(args) > 2 and args[0] == "kernel" and args[1] == "--homes":
        homes = args[2]
        args = args[:1] + args[3:]
    if len(args) < 3 or args[0] != "kernel" or args[1] != "--":
        print("usage: python -m trashlab_instructor.sandbox kernel [--homes DIR] -- CMD...", file=sys.stderr)
        return 2
    return _kernel(args[2:], homes)


if __name__ == "__main__":
    sys.exit(main())
