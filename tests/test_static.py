"""Lint and type check, in the quick tier: ruff and mypy as configured in pyproject.toml pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    """ruff over the whole repository (library, tests, benchmarks, notebooks) with pyproject's rules."""
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        pytest.fail("ruff is missing: pip install -r requirements-test.txt")
    out = subprocess.run([find_ruff_bin(), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, f"ruff check found problems (fix them, or `ruff check --fix`):\n{out.stdout}{out.stderr}"


def test_the_package_says_it_is_typed():
    """PEP 561: trashlab ships py.typed, so a student's or instructor's type checker reads our hints."""
    assert (ROOT / "trashlab" / "py.typed").is_file()
    assert '"trashlab" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_mypy_finds_nothing():
    """mypy in its default (basic) mode over the library and the instructor tools (pyproject's [tool.mypy]).

    In a process of its own: mypy raises the interpreter's recursion limit (and tunes the garbage
    collector), which would change how later tests in this process parse deeply nested JSON.
    """
    mypy = Path(sys.executable).with_name("mypy")
    if not mypy.exists():
        pytest.fail("mypy is missing: pip install -r requirements-test.txt")
    out = subprocess.run([str(mypy), "--config-file", str(ROOT / "pyproject.toml"),
                          "--cache-dir", str(ROOT / ".mypy_cache"),
                          str(ROOT / "trashlab"), str(ROOT / "trashlab_instructor")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, f"mypy found problems:\n{out.stdout}{out.stderr}"
