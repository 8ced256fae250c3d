"""Real Jupyter kernels for tests that act like a student: run cells, press Interrupt, re-run, crash.

:class:`Kernel` drives an ipykernel through jupyter_client (the same messages JupyterLab sends). It runs
THIS interpreter with this checkout first on ``PYTHONPATH`` and its own trashlab state folder, so
what it starts is recorded where the test can check it. ``interrupt()`` is what jupyter_client does
for JupyterLab's ■ button (SIGINT to the kernel's process group); :class:`JupyterServer` is a real
jupyter_server whose ``POST /api/kernels/<id>/interrupt`` endpoint is the button's actual path.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import psutil
from jupyter_client import BlockingKernelClient
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "trashlab-this-python"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def kernel_env(state: str) -> dict:
    """The environment of a test kernel: this checkout importable, its own state folder, no NATS_URL."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["TRASHLAB_STATE_DIR"] = state
    env.pop("NATS_URL", None)
    return env


def kernelspec_dir() -> Path:
    """A kernelspec folder (``<dir>/kernels/<name>``) whose only kernel runs this interpreter."""
    base = Path(tempfile.mkdtemp(prefix="proof-kernels-"))
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "trashlab tests", "language": "python"}))
    return base


#: how much of a cell's code and output a failure message shows (CI's log must explain the failure alone)
EXPLAIN_LINES = 12
EXPLAIN_CHARS = 4000


def _head(code: str, lines: int = EXPLAIN_LINES) -> str:
    """The first ``lines`` lines of a cell, indented, with how many more there are."""
    rows = code.strip("\n").splitlines() or ["(empty)"]
    more = f"\n    ... ({len(rows) - lines} more lines)" if len(rows) > lines else ""
    return "\n".join("    " + r for r in rows[:lines]) + more


def _tail(text: str, chars: int = EXPLAIN_CHARS) -> str:
    """The end of a cell's output, indented, with how much was left out before it."""
    if not text.strip():
        return "    (nothing)"
    cut = f"    ... ({len(text) - chars} characters before this)\n" if len(text) > chars else ""
    return cut + "\n".join("    " + r for r in text[-chars:].splitlines())


class Reply:
    """What one executed cell showed: its outputs as text, and how it ended (and its code, for failure messages)."""

    def __init__(self, status: str, outputs: list, code: str = "") -> None:
        self.status = status
        self.outputs = outputs
        self.code = code

    def explain(self, problem: str, expected: str) -> str:
        """A failure message that stands alone in CI's log: the problem, the cell's code, what it showed, what
        was expected. A string, so pytest prints all of it (an object as message is cut to one short repr)."""
        return (f"{problem}\n--- the cell:\n{_head(self.code)}\n--- it ended with status {self.status!r} and "
                f"showed:\n{_tail(self.text)}\n--- expected: {expected}")

    @property
    def text(self) -> str:
        """Everything the cell showed (streams, results, displays, errors), ANSI colours removed."""
        parts: "list[str]" = []
        last_stream = None
        for out in self.outputs:
            kind = out["msg_type"]
            content = out["content"]
            if kind == "stream" and last_stream == content["name"]:
                parts[-1] += content["text"]  # a line may arrive in two messages: the front end joins them
                continue
            last_stream = content["name"] if kind == "stream" else None
            if kind == "stream":
                parts.append(content["text"])
            elif kind == "error":
                parts.append("\n".join(content["traceback"]))
            elif kind in ("execute_result", "display_data", "update_display_data"):
                parts.append(content["data"].get("text/plain", ""))
        return ANSI.sub("", "\n".join(parts))

    @property
    def errors(self) -> list:
        """The error outputs: ``(ename, evalue, traceback lines)``."""
        return [(o["content"]["ename"], o["content"]["evalue"], [ANSI.sub("", t) for t in o["content"]["traceback"]])
                for o in self.outputs if o["msg_type"] == "error"]

    def __repr__(self) -> str:
        return f"<Reply {self.status}: {self.text[-800:]!r}>"


class Kernel:
    """A live ipykernel: ``run(code)`` a cell, ``submit`` one and ``interrupt()`` it, ``kill()`` it."""

    def __init__(self, state: str, *, km: Optional[KernelManager] = None,
                 client: Optional[BlockingKernelClient] = None, folders: "tuple[Path, ...]" = ()) -> None:
        self.state = state
        self.km = km
        self._folders = folders  # removed when the kernel is shut down
        if client is None:
            assert km is not None
            client = km.client()
        self.client = client
        self.client.start_channels()
        if km is not None:
            self.client.wait_for_ready(timeout=60)
        else:
            self._wait_ready(timeout=60)
        self._outputs: "dict[str, list]" = {}
        self._code: "dict[str, str]" = {}  # each submitted cell's code, for failure messages
        self._early: "dict[str, dict]" = {}  # replies read before result() asked for them
        # a cell that never finishes is explained by the kernel's stacks (SIGUSR1: faulthandler, all threads)
        self._stacks = os.path.join(state, f"kernel-stacks-{id(self)}.txt")
        setup = self.client.execute("import faulthandler as _fh, signal as _sig\n"
                                    f"_fh.register(_sig.SIGUSR1, file=open({self._stacks!r}, 'w'), all_threads=True)",
                                    silent=True, store_history=False)
        while self.client.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != setup:
            pass

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the kernel answers ``kernel_info`` and its IOPub messages reach this client.

        jupyter_client's ``wait_for_ready`` does the same, but a client made without its KernelManager (a kernel
        of a jupyter_server) also counts one heartbeat unanswered for 1 s as a dead kernel, and a kernel still
        importing ipykernel on a loaded machine misses one: "Kernel died before replying to kernel_info" (seen
        here under load; a client whose kernel starts 2.5 s late gets it every time).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.client.kernel_info()
            try:
                msg = self.client.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["msg_type"] != "kernel_info_reply":
                continue
            try:
                self.client.get_iopub_msg(timeout=0.2)  # IOPub connected: the cell's outputs will reach us
                return
            except queue.Empty:
                pass
        raise AssertionError(f"the kernel did not answer kernel_info within {timeout} s (its IOPub included)")

    @classmethod
    def start(cls, state: Optional[str] = None, cwd: Optional[str] = None) -> "Kernel":
        """Start a fresh kernel through jupyter_client, as JupyterLab's kernel manager does (in ``cwd``, by
        default the repository root: give a scratch folder to a notebook that writes files, e.g. ``sim.py``)."""
        own_state = state is None
        state = state or tempfile.mkdtemp(prefix="trashlab-test-state-")
        specs = kernelspec_dir()
        from jupyter_client.kernelspec import KernelSpecManager

        # IPC sockets in the kernel's own folder: TCP ports are picked free, closed, then bound by the kernel,
        # and two kernels starting at once on parallel workers can pick the same one
        km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs / "kernels")]),
                           transport="ipc", ip=os.path.join(state, "kernel-ipc"))
        try:
            km.start_kernel(env=kernel_env(state), cwd=cwd or str(ROOT))
            return cls(state, km=km, folders=(specs, Path(state)) if own_state else (specs,))  # its own state goes too
        except BaseException:  # nothing of a kernel that did not start is left behind
            if km.has_kernel:
                km.shutdown_kernel(now=True)
            shutil.rmtree(specs, ignore_errors=True)
            if own_state:
                shutil.rmtree(state, ignore_errors=True)
            raise

    @property
    def pid(self) -> int:
        """The kernel's process id."""
        if self.km is not None:
            return self.km.provisioner.process.pid  # type: ignore[union-attr]
        return int(self.run("import os; print(os.getpid())").text.strip())

    def submit(self, code: str) -> str:
        """Send a cell for execution; return its message id at once."""
        msg_id = self.client.execute(code, allow_stdin=False)
        self._outputs[msg_id] = []
        self._code[msg_id] = code
        return msg_id

    def _reply(self, msg_id: str, status: str) -> Reply:
        """What the cell ``msg_id`` showed so far, with its code."""
        return Reply(status, self._outputs.get(msg_id, []), self._code.get(msg_id, ""))

    def _pump(self, timeout: float) -> None:
        try:
            msg = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return
        parent = msg.get("parent_header", {}).get("msg_id")
        if msg["msg_type"] in ("stream", "error", "execute_result", "display_data", "update_display_data"):
            self._outputs.setdefault(parent, []).append(msg)

    def wait_output(self, msg_id: str, text: str, timeout: float = 30) -> None:
        """Wait until the running cell showed ``text`` (e.g. a line printed just before a long wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self._reply(msg_id, "").text:
                return
            self._pump(0.1)
        shown = self._reply(msg_id, "still running")
        raise AssertionError(shown.explain(f"the cell never showed {text!r} within {timeout} s", f"{text!r} in its output"))

    def result(self, msg_id: str, timeout: float = 60) -> Reply:
        """Wait for the cell's reply; return everything it showed."""
        deadline = time.monotonic() + timeout
        while True:
            if msg_id in self._early:
                reply = self._early.pop(msg_id)
                break
            try:
                reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                running = self._reply(msg_id, "still running")
                raise AssertionError(running.explain(f"the cell did not finish within {timeout} s",
                                                     f"its reply within {timeout} s") + "\n" + self.stacks()) from None
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        # the kernel goes idle after all of the cell's output was published
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=10)
            except queue.Empty:
                break
            parent = msg.get("parent_header", {}).get("msg_id")
            if msg["msg_type"] in ("stream", "error", "execute_result", "display_data", "update_display_data"):
                self._outputs.setdefault(parent, []).append(msg)
            if msg["msg_type"] == "status" and parent == msg_id and msg["content"]["execution_state"] == "idle":
                break
        return self._reply(msg_id, reply["content"]["status"])

    def stacks(self) -> str:
        """What every thread of the kernel is doing now (Python stacks), for a cell that hangs."""
        if self.km is None:
            return "(no stacks: a kernel of a jupyter_server, its pid is not known here)"
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except OSError:
            return "(no stacks: the kernel is gone)"
        time.sleep(1.0)
        try:
            return "the kernel's threads:\n" + Path(self._stacks).read_text()[-6000:]
        except OSError as e:
            return f"(no stacks: {e})"

    def running_after(self, msg_id: str, seconds: float) -> bool:
        """True if the cell is still running ``seconds`` after now (its reply is kept for :meth:`result`)."""
        try:
            reply = self.client.get_shell_msg(timeout=seconds)
        except queue.Empty:
            return True
        self._early[reply["parent_header"].get("msg_id")] = reply
        return False

    def outputs_of(self, msg_id: str, settle: float = 0.5) -> Reply:
        """What an earlier cell shows now (background output may still land under it)."""
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            self._pump(0.05)
        return self._reply(msg_id, "")

    def run(self, code: str, timeout: float = 60) -> Reply:
        """Run one cell to the end."""
        return self.result(self.submit(code), timeout)

    def ok(self, code: str, timeout: float = 60) -> Reply:
        """Run one cell that must succeed without showing a traceback."""
        reply = self.run(code, timeout)
        assert reply.status == "ok" and "Traceback" not in reply.text, \
            reply.explain("a cell that must succeed failed", "status 'ok' and no traceback")
        return reply

    def interrupt(self) -> None:
        """What JupyterLab's ■ does: jupyter_client's interrupt (SIGINT to the kernel's process group)."""
        assert self.km is not None
        self.km.interrupt_kernel()

    def kill(self) -> None:
        """SIGKILL the kernel process, as a crash or the OOM killer would."""
        os.kill(self.pid, 9)
        if self.km is not None:
            self.km.provisioner.process.wait()  # type: ignore[union-attr]

    def shutdown(self) -> None:
        """Shut the kernel down as JupyterLab does (graceful, then its process group is killed)."""
        self.client.stop_channels()
        if self.km is not None and self.km.has_kernel:
            self.km.shutdown_kernel(now=False)
        elif self.km is not None:
            self.km.cleanup_resources()
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)


def running_recorded(state: str) -> "dict[str, int]":
    """``name -> pid`` of each process recorded in a trashlab state folder that still runs (zombies excluded)."""
    found = {}
    for record in Path(state).glob("*.json"):
        try:
            rec = json.loads(record.read_text())
            proc = psutil.Process(rec["pid"])
            if abs(proc.create_time() - rec["create_time"]) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                found[f"{rec['kind']}:{rec['name']}"] = rec["pid"]
        except (psutil.Error, ValueError, KeyError, TypeError, OSError):
            pass
    return found


def wait_gone(pids, timeout: float = 10) -> list:
    """Wait until none of ``pids`` runs; return those still running."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if left:
            time.sleep(0.1)
    return left


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (where the test's jupyter_server listens)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class JupyterServer:
    """A real jupyter_server driven by its REST API (what JupyterLab's front end calls).

    It listens on a Unix socket in its own folder and its kernels talk over IPC sockets: a TCP port picked
    free, closed, then bound by the server can be taken in between by another test's process (seen here: the
    status request was answered by someone's nats-server).
    """

    def __init__(self, state: str) -> None:
        self.state = state
        self.token = secrets.token_hex(16)
        self._specs = kernelspec_dir()
        self.sock = str(self._specs / "jupyter.sock")
        self.runtime = str(self._specs / "runtime")
        env = kernel_env(state)
        env.update(JUPYTER_PATH=str(self._specs), JUPYTER_RUNTIME_DIR=self.runtime,
                   JUPYTER_CONFIG_DIR=str(self._specs / "config"), JUPYTER_DATA_DIR=str(self._specs / "data"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", f"--sock={self.sock}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={ROOT}", "--allow-root",
             f"--KernelSpecManager.allowed_kernelspecs={KERNEL}", "--KernelManager.transport=ipc"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.request("GET", "/api/status")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._kill()  # a server that did not start leaves neither its process nor its folders
                    raise AssertionError(f"jupyter_server did not start within 60 s: "
                                         f"{self.proc.stderr.read()[-2000:] if self.proc.stderr else ''}") from None
                time.sleep(0.2)

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self._specs, ignore_errors=True)

    def request(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        """One REST call with the server's token; the JSON answer ({} when empty)."""
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        conn = _UnixHTTPConnection(self.sock, timeout=30)
        try:
            conn.request(method, path, body=data, headers={"Authorization": f"token {self.token}",
                                                           "Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            raise OSError(f"jupyter_server answered {method} {path} with HTTP {resp.status}: {raw[-1000:]!r}")
        return json.loads(raw) if raw else {}

    def start_kernel(self) -> "tuple[str, Kernel]":
        """Start a kernel through ``POST /api/kernels``; return its id and a client connected to it."""
        kernel_id = self.request("POST", "/api/kernels", {"name": KERNEL})["id"]
        connection = Path(self.runtime) / f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + 30
        while not connection.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        return kernel_id, Kernel(self.state, client=client)

    def interrupt(self, kernel_id: str) -> None:
        """``POST /api/kernels/<id>/interrupt``: JupyterLab's ■ button."""
        self.request("POST", f"/api/kernels/{kernel_id}/interrupt")

    def stop(self) -> None:
        """Shut the server down (its kernels with it)."""
        try:
            self.request("POST", "/api/shutdown")
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
