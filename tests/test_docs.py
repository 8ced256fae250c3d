"""Docs that cannot rot: the README's code runs, the API reference builds with every internal link resolving,
the README's figures and Python versions are what the course and the registry say."""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: what the API reference documents: the façade and every public subpackage (private modules left out)
API_MODULES = ["trashlab", "trashlab.errors", "trashlab.message", "trashlab.servers", "trashlab.services",
               "trashlab.notebook", "trashlab.course"]


def python_blocks(text: str) -> "list[str]":
    """The ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def readme_pythons() -> "list[str]":
    """The Python versions the README says are supported (its "Supported systems" table)."""
    row = next(line for line in README.read_text().splitlines() if line.startswith("| Python 3.") and "| yes" in line)
    return re.findall(r"3\.\d+", row.split("|")[1])


# ----- the README's code --------------------------------------------------------------------------------------
@pytest.mark.course  # a real kernel and a real broker, like a student's first cell
def test_every_python_block_of_the_readme_runs_in_a_fresh_kernel():
    from kernels import Kernel

    blocks = python_blocks(README.read_text())
    assert blocks, "no ```python block in README.md"
    k = Kernel.start()
    try:
        for i, code in enumerate(blocks, 1):
            reply = k.run(code, timeout=120)
            assert reply.status == "ok" and not reply.errors, \
                f"README.md's python block {i} failed in a fresh kernel:\n{code}\n--- it said:\n{reply.text}\n{reply.errors}"
        seen = k.ok("print('readings', len(col.frame()) > 0, 'levels', len(await trashlab.query_levels(broker.url)) > 0)")
        assert "readings True levels True" in seen.text, f"the README's example ran but collected nothing: {seen.text}"
        k.ok("trashlab.stop_everything(everywhere=False)")  # this kernel's state folder only
    finally:
        k.shutdown()
        shutil.rmtree(k.state, ignore_errors=True)


def test_the_readme_example_imports_what_it_uses():
    """Cheap guard for the kernel test above: a name the README's first block calls is imported there."""
    block = re.sub(r"#.*", "", python_blocks(README.read_text())[0])  # code, not comments
    imported = set(re.findall(r"^import ([\w, ]+)", block, flags=re.M)[0].replace(" ", "").split(","))
    used = set(re.findall(r"\b(asyncio|trashlab|time|pandas|pd)\.", block))
    assert used <= imported, f"README.md's example uses {sorted(used - imported)} without importing it"


# ----- figures the README states ------------------------------------------------------------------------------
def test_the_readme_states_the_courses_points_as_the_sources_hold_them():
    total = auto = optional = 0
    for path in sorted((ROOT / "course" / "source").glob("*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            meta = cell["metadata"].get("nbgrader", {})
            if meta.get("grade"):
                total += meta.get("points", 0)
                auto += 0 if cell["cell_type"] == "markdown" or meta.get("solution") else meta.get("points", 0)
                optional += meta.get("points", 0) if path.stem == "05b-jetstream" else 0
    text = README.read_text()
    said = f"The course is worth **{total} points**: {auto} graded automatically"
    assert said in text, f"README.md should say {said!r} (computed from course/source), with {total - auto} by hand"
    assert f"for written answers graded by hand; the optional `05b-jetstream` holds {optional} of them" in text


def test_the_readme_states_the_core_path_s_time_as_the_notebooks_state_it():
    """The core path's time in the README is the sum of the times the notebooks 01-08 state (05b and 09 apart)."""
    minutes = {}
    for path in sorted((ROOT / "course" / "source").glob("*/*.ipynb")):
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        found = re.search(r"\*\*Time:\*\* about (\d+) minutes", first)
        assert found, f"{path.stem}: its first cell states no '**Time:** about N minutes'"
        minutes[path.stem] = int(found.group(1))
    core = sum(m for name, m in minutes.items() if name[:2] in {"01", "02", "03", "04", "05", "06", "07", "08"}
               and name != "05b-jetstream")
    said = f"the core path `01`–`08` takes about **{core // 60} h {core % 60} min**"
    assert said in README.read_text(), f"README.md should say {said!r} (the notebooks state {minutes})"
    assert core <= 270, f"the core path takes {core} min, more than 4.5 h: {minutes}"


# ----- the API reference --------------------------------------------------------------------------------------
class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: "list[str]" = []
        self.ids: "set[str]" = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name == "href" and value and tag == "a":
                self.hrefs.append(value)


def test_the_api_reference_builds_and_every_internal_link_resolves(tmp_path):
    """pdoc over the public modules (in this process: no server, nothing started), then each relative link and
    #anchor is looked up in the pages it points to."""
    try:
        import pdoc
    except ImportError:
        pytest.fail("pdoc is missing: pip install -r requirements-test.txt")
    import pdoc.extract

    private = [m for m in pdoc.extract.walk_specs(API_MODULES) if any(p.startswith("_") for p in m.split("."))]
    pdoc.render.configure(docformat="restructuredtext", search=False, show_source=False)
    pdoc.pdoc(*API_MODULES, *(f"!{m}" for m in private), output_directory=tmp_path)
    pages = {p: _Links() for p in tmp_path.rglob("*.html")}
    for page, parser in pages.items():
        parser.feed(page.read_text(encoding="utf-8"))
    names = {p.relative_to(tmp_path).as_posix() for p in pages}
    for needed in ("trashlab.html", "trashlab/servers/broker.html", "trashlab/services/collector.html",
                   "trashlab/errors.html"):
        assert needed in names, f"the API reference has no {needed}; it has {sorted(names)}"
    top = (tmp_path / "trashlab.html").read_text(encoding="utf-8")
    import trashlab

    import types

    missing = [n for n in trashlab.__all__
               if not isinstance(getattr(trashlab, n), types.ModuleType) and f'id="{n}"' not in top]
    assert not missing, f"trashlab.html does not document these public names: {missing}"
    broken, checked = [], 0
    for page, parser in pages.items():
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue  # outside links are not ours to check here
            checked += 1
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target not in pages:
                broken.append(f"{page.relative_to(tmp_path)}: {href} (no such page)")
            elif parts.fragment and parts.fragment not in pages[target].ids:
                broken.append(f"{page.relative_to(tmp_path)}: {href} (no #{parts.fragment} there)")
    assert checked > 100, f"only {checked} internal links in the API reference: did pdoc document the modules?"
    assert not broken, f"{len(broken)} of {checked} internal links in the API reference are broken:\n" + \
        "\n".join(broken[:40])


# ----- the Python versions the README names -------------------------------------------------------------------
def test_pyproject_and_the_readme_name_the_same_oldest_python():
    oldest = min(readme_pythons(), key=lambda v: tuple(map(int, v.split("."))))
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = ">={oldest}"' in pyproject, \
        f"README.md supports Python {oldest} and newer; pyproject.toml's requires-python should say >={oldest}"


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.mark.slow  # asks PyPI: about 20 s per Python version
@pytest.mark.parametrize("version", readme_pythons())
def test_the_requirements_resolve_to_wheels_for_each_python_the_readme_names(version, tmp_path):
    """What ``pip install -r requirements.txt`` resolves to on that Python, wheels only (nothing is installed:
    ``--dry-run`` fetches the wheels' metadata, not the wheels, unlike ``pip download``)."""
    if not _pypi_reachable():
        pytest.skip("PyPI (https://pypi.org) is not reachable from here: cannot ask which wheels exist")
    pins = tmp_path / "requirements.txt"
    pins.write_text("".join(line for line in (ROOT / "requirements.txt").read_text().splitlines(keepends=True)
                            if not line.startswith("-e")))  # trashlab itself: pyproject's requires-python
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--only-binary=:all:", "--python-version", version, "--target", str(tmp_path / "t"),
                          "--disable-pip-version-check", "-r", str(pins)],
                         capture_output=True, text=True, timeout=600)
    errors = "\n".join(line for line in out.stderr.splitlines() if not line.startswith("WARNING: Location"))
    assert out.returncode == 0, f"requirements.txt does not resolve to wheels for Python {version}:\n{errors}"
