"""Binder without Docker: repo2docker renders our image, and an emulated build runs the course.

The emulation does what the rendered Dockerfile does, in a fresh venv: the base image's Jupyter (the
versions pinned in repo2docker's own lock file), ``pip install -r binder/requirements.txt`` from the
repository root, ``binder/postBuild``, then ``binder/start <command>`` at launch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trashlab
from conftest import unique
from sessions import free_port, stop_session

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
BIN = Path(sys.executable).parent
#: Packages of repo2docker's base environment that the course's own pins meet.
BASE_PACKAGES = ("jupyterlab", "notebook", "ipykernel", "ipywidgets", "jupyter_server")


def session_notebooks(root: Path = ROOT) -> list:
    """The notebooks a Binder session runs: the course's, then the stand-in whose clients use defaults.

    The course notebooks name their broker (``"iot-msg"``); the stand-in connects without a URL, so
    its readings go through whatever ``NATS_URL`` names: that is what proves the session broker.
    """
    return sorted((root / "notebooks").glob("*.ipynb")) + [root / "tests" / "notebooks" / "live-dashboard.ipynb"]


def runtime_python() -> tuple:
    """The Python version runtime.txt pins, e.g. (3, 11)."""
    text = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    assert m, f"runtime.txt should read python-X.Y, not {text!r}"
    return int(m.group(1)), int(m.group(2))


def repo2docker() -> str:
    exe = shutil.which("jupyter-repo2docker", path=str(BIN)) or shutil.which("jupyter-repo2docker")
    if exe is None:
        pytest.fail("jupyter-repo2docker is missing: pip install -r requirements-test.txt")
    return exe


# ----- (1) repo2docker renders the Dockerfile from our binder/ -----------------------------------
def test_repo2docker_renders_the_image_from_binder_folder():
    out = subprocess.run([repo2docker(), "--no-build", "--user-id", "1000", "--user-name", "jovyan", str(ROOT)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    dockerfile = out.stdout
    major, minor = runtime_python()
    assert f"Building conda environment for python={major}.{minor}\n" in out.stderr  # from runtime.txt
    copy_repo = dockerfile.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/")
    install = dockerfile.index('pip install --no-cache-dir -r "binder/requirements.txt"')
    assert copy_repo < install, "trashlab itself (-e .) needs the whole repository copied before pip runs"
    assert "WORKDIR ${REPO_DIR}" in dockerfile  # pip runs from the root, so `.` is the repository
    assert "RUN ./binder/postBuild" in dockerfile
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in dockerfile
    # root config is ignored once binder/ exists: our root requirements.txt is not what gets installed
    assert 'pip install --no-cache-dir -r "requirements.txt"' not in dockerfile


def test_binder_files_are_executable_scripts_that_fail_fast():
    for name in ("postBuild", "start"):
        path = BINDER / name
        assert os.access(path, os.X_OK), f"binder/{name} must be executable"
        assert path.read_text().startswith("#!/bin/bash")
    assert "set -e" in (BINDER / "postBuild").read_text()
    assert (BINDER / "start").read_text().rstrip().endswith('exec "$@"')


# ----- the library side: a dead NATS_URL never stops a notebook that started its own broker ------
def _dead_url() -> str:
    return f"nats://127.0.0.1:{free_port()}"  # nobody listens there


async def test_dead_nats_url_falls_back_to_the_broker_started_here(monkeypatch, caplog):
    broker = trashlab.Broker(unique("own")).start()
    try:
        monkeypatch.setenv("NATS_URL", _dead_url())
        with caplog.at_level("WARNING", logger="trashlab"):
            col = await trashlab.Collector().start()
            sim = await trashlab.Simulator(interval=0, count=20).start()
            assert await col.wait_for(20, timeout=10) == 20
        where = col.connected_url, sim.connected_url
        await sim.stop()
        await col.stop()
        assert where == (broker.url.split("//")[1],) * 2
        warned = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warned) == 2 and all(broker.name in w for w in warned)
    finally:
        broker.stop()


async def test_dead_nats_url_without_a_broker_here_is_one_clear_error(monkeypatch):
    dead = _dead_url()
    monkeypatch.setenv("NATS_URL", dead)
    monkeypatch.setattr("trashlab.servers.names.running", list)
    with pytest.raises(trashlab.errors.ConnectionFailed, match="is a broker running"):
        await trashlab.Collector().start()


async def test_an_explicit_dead_url_is_still_an_error(shared_broker):
    with pytest.raises(trashlab.errors.ConnectionFailed, match="cannot reach"):
        await trashlab.Collector(_dead_url()).start()


# ----- (2) an emulated Binder build in a fresh venv ----------------------------------------------
def base_image_pins(major: int, minor: int) -> list:
    """``name==version`` of the base image's Jupyter packages, read from repo2docker's lock file."""
    import repo2docker as r2d

    conda = Path(r2d.__file__).parent / "buildpacks" / "conda"
    lock = conda / f"environment.py-{major}.{minor}-linux-64.lock"
    assert lock.exists(), f"repo2docker has no base environment for Python {major}.{minor}"
    text = lock.read_text()
    pins = []
    for name in BASE_PACKAGES:
        m = re.search(rf"/{re.escape(name)}-(\d[\w.]*)-[^/-]+\.(?:conda|tar\.bz2)", text)
        assert m, f"{name} not in {lock.name}"
        pins.append(f"{name}=={m.group(1)}")
    return pins


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{cmd[:4]} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


#: Files whose content decides what the emulated image installs: the cached venv is rebuilt when one changes
#: (of pyproject.toml only what pip reads: the build system, the project and setuptools' tables).
BUILD_INPUTS = ("binder/requirements.txt", "binder/runtime.txt", "requirements.txt", "pyproject.toml")


def _install_relevant(name: str) -> bytes:
    if name != "pyproject.toml":
        return (ROOT / name).read_bytes()
    import tomllib  # the build runs only on binder/runtime.txt's Python (3.11)

    data = tomllib.loads((ROOT / name).read_text())
    tool = data.get("tool", {})
    kept = {"build-system": data.get("build-system"), "project": data.get("project"),
            "setuptools": {k: v for k, v in tool.items() if k.startswith("setuptools")}}
    return json.dumps(kept, sort_keys=True).encode()


def _build_key(pins: list) -> str:
    """``<this checkout>-<its build inputs>``: a cached image is reused only for the same inputs."""
    digest = hashlib.sha256(f"{sys.version}\n{pins}".encode())
    for name in BUILD_INPUTS:
        digest.update(name.encode() + b"\0" + _install_relevant(name))
    where = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    return f"{where}-{digest.hexdigest()[:16]}"


def _copy_repository(repo: Path) -> None:
    """COPY src/ ${REPO_DIR}/: this checkout as it is now (so the course under test is the current one)."""
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "test-artifacts", "__pycache__", ".pytest_cache", ".hypothesis",
        "*.egg-info", ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache"))


@pytest.fixture(scope="module")
def binder_image():
    """A venv built the way repo2docker builds the image; yields (repo copy, environment).

    The venv (base image pins, ``pip install -r binder/requirements.txt``, ``pip check``) is cached in
    ``<test venv>/trashlab-binder/<key>`` and rebuilt only when BUILD_INPUTS, the pins or Python change.
    The repository copy is refreshed and ``binder/postBuild`` runs on every use; pip's editable install
    of trashlab points at that copy, so the session runs this checkout's code and notebooks.
    """
    major, minor = runtime_python()
    if sys.version_info[:2] != (major, minor):
        pytest.skip(f"binder/runtime.txt pins Python {major}.{minor}; this test runs on "
                    f"{sys.version_info[0]}.{sys.version_info[1]}")
    pins = base_image_pins(major, minor)
    key = _build_key(pins)
    cache = Path(sys.prefix) / "trashlab-binder"
    home = cache / key
    home.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run of this checkout waits instead of building beside it
        for old in cache.glob(f"{key.split('-')[0]}-*"):  # older builds of this checkout
            if old.name not in (key, f"{key}.lock"):
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
        repo, venv, built_stamp = home / "repo", home / "env", home / "built"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NATS_URL", "VIRTUAL_ENV")}
        env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
                   PIP_DISABLE_PIP_VERSION_CHECK="1", JUPYTER_PLATFORM_DIRS="1")
        env.setdefault("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))  # pip's cache survives the fake HOME
        _copy_repository(repo)
        if not built_stamp.exists():
            shutil.rmtree(venv, ignore_errors=True)
            started = time.monotonic()
            _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
            _run(pip + pins, env=env, cwd=repo, timeout=900)  # the base image
            _run(pip + ["-r", "binder/requirements.txt"], env=env, cwd=repo, timeout=900)  # as the Dockerfile does
            _run([str(venv / "bin" / "python"), "-m", "pip", "check"], env=env, cwd=repo, timeout=120)
            built_stamp.write_text(key)
            print(f"binder image: built in {time.monotonic() - started:.0f} s, cached as {home}")
        built = _run(["./binder/postBuild"], env=env, cwd=repo, timeout=300)
        assert "nats-server: v" in built.stdout  # postBuild checked the binary runs
        yield repo, env


def _launch(repo: Path, env: dict, notebooks: list, timeout: float = 900) -> tuple:
    """``binder/start python tests/binder_session.py NOTEBOOK...``; returns (summary, stdout, stderr)."""
    cmd = ["./binder/start", "python", "tests/binder_session.py", *[str(p) for p in notebooks]]
    tmp = repo.parent / "tmp"  # binder/start's session-broker log (and the session's temp files) stay with the test
    tmp.mkdir(exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=repo, env={**env, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop_session(proc.pid)  # the session broker start left running (the container would end it)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, f"no summary from binder_session.py:\n{out[-3000:]}\n{err[-3000:]}"
    return json.loads(lines[-1]), out, err


#: A fresh venv install is a few minutes from pip's cache, longer on a busy machine.
BUILD_TIMEOUT = pytest.mark.timeout(1800)


@BUILD_TIMEOUT
def test_binder_image_has_the_course_and_stays_lean(binder_image):
    repo, env = binder_image
    python = shutil.which("python", path=env["PATH"])
    probe = _run([python, "-c", "import importlib.util as u, trashlab; print(trashlab.__file__); "
                  "print([m for m in ('nbgrader', 'pytest', 'playwright') if u.find_spec(m)])"],
                 env=env, cwd="/", timeout=120).stdout.splitlines()
    assert probe[0].startswith(str(repo)), "trashlab should be the repository's own (pip install -e .)"
    assert probe[1] == "[]", f"test/teacher tools leaked into the student image: {probe[1]}"


@BUILD_TIMEOUT
def test_binder_start_runs_the_notebooks_against_its_session_broker(binder_image):
    repo, env = binder_image
    notebooks = [p.relative_to(ROOT) for p in session_notebooks()]
    started = time.monotonic()
    summary, out, err = _launch(repo, env, notebooks)
    assert "session broker at nats://127.0.0.1:" in out, err[-2000:]
    assert summary["nats_url"].startswith("nats://127.0.0.1:")
    assert summary["notebooks"] == {str(p): "ok" for p in notebooks}, summary["notebooks"]
    assert summary["readings_seen"] > 0, "readings of clients without a URL should flow through the session broker"
    assert summary["session_broker_alive"], "the session broker should outlive the notebooks (06 clean-up too)"
    print(f"binder session: {len(notebooks)} notebooks in {time.monotonic() - started:.1f}s, "
          f"{summary['readings_seen']} readings via the session broker")


@BUILD_TIMEOUT
def test_binder_notebooks_still_run_when_the_session_broker_is_gone(binder_image):
    """A dead ``NATS_URL``: the notebook whose clients use defaults falls back to the broker it started.

    Only that notebook runs here. The course notebooks name their broker (``"iot-msg"``), which never
    reads ``NATS_URL``; a course cell that used defaults would take the same fallback as without
    ``NATS_URL`` (test_dead_nats_url_falls_back_to_the_broker_started_here), and without a broker
    started before it would fail the same way in tests/test_notebooks.py, where ``NATS_URL`` is unset.
    Running the whole course a second time here would prove nothing more.
    """
    repo, env = binder_image
    notebooks = [p.relative_to(ROOT) for p in session_notebooks() if p.parent.name == "notebooks"
                 and p.parent.parent.name == "tests"]
    assert notebooks, "the stand-in notebook whose clients use defaults is missing"
    summary, out, err = _launch(repo, {**env, "NATS_URL": _dead_url()}, notebooks)
    assert "session broker at" not in out  # a NATS_URL that is already set is kept, not replaced
    assert summary["notebooks"] == {str(p): "ok" for p in notebooks}, summary["notebooks"]
    assert summary["readings_seen"] == 0
