"""Layers point one way (docs/architecture.md): base -> servers -> services -> course / notebook -> cli.

An AST check over trashlab/: every import counts, at module level, inside a function or under
``TYPE_CHECKING``, and so does every look-up of a module by name (``sys.modules[...]``,
``sys.modules.get(...)``, ``importlib.import_module(...)``, a string naming a trashlab module). A
module may reach its own layer and the layers below; a lower layer that needs news from an upper one
calls the callbacks the upper one registered in ``trashlab/_hooks.py``. No circles, also not inside
one layer. Each offence is named with file:line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set

import pytest

pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parent.parent

#: the layers, lowest first; a module's layer is the first prefix below that matches its name
LAYERS = ("base", "servers", "services", "course / notebook", "cli")
#: modules of the package root by layer (a new one must be placed here, or the test says so)
ROOT_MODULES = {
    "trashlab.errors": "base", "trashlab.message": "base", "trashlab._aio": "base", "trashlab._compat": "base",
    "trashlab._progress": "base", "trashlab._text": "base", "trashlab._hooks": "base", "trashlab._secrets": "base", "trashlab._lazy": "base",
    "trashlab.cli": "cli", "trashlab.__main__": "cli", "trashlab.grading": "cli",
    "trashlab": "cli",  # the façade: it maps public names to every layer's modules
}
SUBPACKAGES = {"trashlab.servers": "servers", "trashlab.services": "services", "trashlab.course": "course / notebook",
               "trashlab.notebook": "course / notebook"}
_MODULE_NAME = re.compile(r"trashlab(\.\w+)+")


class Edge(NamedTuple):
    source: str  # importing module
    target: str  # imported module
    where: str  # file:line


def modules(package: Path) -> Dict[str, Path]:
    """Module name -> file, for every .py under ``package`` (a folder named trashlab)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> Optional[str]:
    """The layer of a trashlab module (None: not placed in any layer yet)."""
    if module in ROOT_MODULES:
        return ROOT_MODULES[module]
    for prefix, layer in SUBPACKAGES.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def _resolve(current: str, is_package: bool, level: int, name: Optional[str]) -> str:
    if not level:
        return name or ""
    base = current.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([name] if name else []))


def _is_sys_modules(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "modules" and isinstance(node.value, ast.Name) \
        and node.value.id == "sys"


def _named_module(node: ast.AST, package: str) -> Optional[str]:
    """The module a look-up's argument names: ``"trashlab.x"``, ``__package__ + ".x"``, ``f"{__package__}.x"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and isinstance(node.left, ast.Name) \
            and node.left.id == "__package__" and isinstance(node.right, ast.Constant):
        return package + str(node.right.value)
    if isinstance(node, ast.JoinedStr):
        text = "".join(str(v.value) if isinstance(v, ast.Constant) else
                       package if isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name)
                       and v.value.id in ("__package__", "__name__") else "\0" for v in node.values)
        return None if "\0" in text else text
    return None


def edges(package: Path) -> List[Edge]:
    """Every reach of one trashlab module into another, with where it is written (each once)."""
    mods = modules(package)
    found: List[Edge] = []
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        own_package = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                for a in node.names:  # `from . import names` reaches the submodule, not the package
                    targets.append(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
            elif isinstance(node, ast.Subscript) and _is_sys_modules(node.value):
                targets = [_named_module(node.slice, own_package) or ""]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute) and (
                    (node.func.attr == "get" and _is_sys_modules(node.func.value))
                    or (node.func.attr == "import_module" and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "importlib" and len(node.args) == 1)):
                targets = [_named_module(node.args[0], own_package) or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_NAME.fullmatch(node.value):
                targets = [node.value]
            for target in targets:
                while target and target not in mods:  # trashlab.servers.broker.Broker -> trashlab.servers.broker
                    target = target.rpartition(".")[0]
                if target and target != name and Edge(name, target, _where(path, package, node)) not in found:
                    found.append(Edge(name, target, _where(path, package, node)))
    return found


def _where(path: Path, package: Path, node: ast.AST) -> str:
    return f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', 0)}"


def _rank(layer: str) -> int:
    return LAYERS.index(layer)


def problems(package: Path) -> List[str]:
    """Each upward reach and each circle, one line each; empty when the layers point one way."""
    mods = modules(package)
    lines = [f"{mods[m].relative_to(package.parent)}: module {m} is in no layer: add it to tests/test_layers.py "
             "(and docs/architecture.md)" for m in mods if layer_of(m) is None]
    found = edges(package)
    for e in found:
        low, high = layer_of(e.source), layer_of(e.target)
        if low and high and _rank(high) > _rank(low):
            lines.append(f"{e.where}: {e.source} ({low}) reaches up to {e.target} ({high}): move the code up, "
                         "or let the upper layer register a callback in trashlab/_hooks.py")
    # a module using what its own package's __init__ defines is no circle: Python imports the package first anyway
    inward = [e for e in found if not e.source.startswith(e.target + ".")]
    graph: Dict[str, Set[str]] = {m: set() for m in mods}
    for e in inward:
        graph[e.source].add(e.target)
    for circle in _circles(graph):
        inside = set(circle)
        ways = sorted({f"{e.where} ({e.source} -> {e.target})" for e in inward if e.source in inside and e.target in inside})
        lines.append(f"a circle of {len(circle)} modules: {', '.join(circle)}; its imports: " + "; ".join(ways))
    return lines


def _circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_layers_point_one_way():
    """No module of trashlab reaches a layer above its own, by import or by name, and no modules form a circle."""
    found = problems(ROOT / "trashlab")
    assert not found, f"{len(found)} layer problem(s) (docs/architecture.md, 'Layers'):\n" + "\n".join(found)


def test_the_check_sees_every_kind_of_reach(tmp_path):
    """The check itself: each way of reaching a module is seen, and a circle inside one layer is too."""
    pkg = tmp_path / "trashlab"
    for sub in ("servers", "services", "course"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "course" / "drill.py").write_text("")
    (pkg / "services" / "spawn.py").write_text("")
    (pkg / "services" / "a.py").write_text("from . import b\n")
    (pkg / "services" / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "servers" / "broker.py").write_text(
        "import sys\nfrom ..errors import E\n"
        "def f():\n    from ..course.drill import run\n"
        "def g():\n    return sys.modules.get('trashlab.services.spawn')\n"
        "def h():\n    return sys.modules[__package__ + '.x'], sys.modules[f'{__package__}.y']\n")
    (pkg / "servers" / "x.py").write_text("")
    (pkg / "servers" / "y.py").write_text("")
    (pkg / "odd.py").write_text("")
    text = "\n".join(problems(pkg))
    assert "trashlab/servers/broker.py:4: trashlab.servers.broker (servers) reaches up to trashlab.course.drill" in text
    assert "trashlab/servers/broker.py:6: trashlab.servers.broker (servers) reaches up to trashlab.services.spawn" in text
    assert "a circle of 2 modules: trashlab.services.a, trashlab.services.b" in text
    assert "trashlab/services/b.py:2 (trashlab.services.b -> trashlab.services.a)" in text
    assert "module trashlab.odd is in no layer" in text
    assert "errors" not in text and "servers.x" not in text and "servers.y" not in text, text
    reached = {(e.source, e.target) for e in edges(pkg)}
    assert {("trashlab.servers.broker", "trashlab.servers.x"), ("trashlab.servers.broker", "trashlab.servers.y"),
            ("trashlab.servers.broker", "trashlab.errors")} <= reached


def test_hooks_call_views_before_clients_and_list_brokers_first():
    """trashlab/_hooks.py: clean-up stops live views before the clients they read from; what runs is listed
    brokers first; registering a key again replaces it (a reloaded module is not called twice)."""
    from trashlab import _hooks

    calls: List[str] = []
    saved = ({k: dict(v) for k, v in _hooks._cleanups.items()}, dict(_hooks._running), dict(_hooks._port_users))
    try:
        for stage in _hooks.CLEANUP_STAGES:
            _hooks._cleanups[stage].clear()
        _hooks._running.clear()
        _hooks._port_users.clear()
        _hooks.on_cleanup("clients", "c", lambda: calls.append("clients") or 2)
        _hooks.on_cleanup("views", "v", lambda: calls.append("views") or 1)
        _hooks.on_cleanup("views", "v", lambda: calls.append("views again") or 1)
        assert _hooks.cleanup() == 3 and calls == ["views again", "clients"]
        _hooks.on_running("clients", lambda: [_hooks.Running("simulator", "sim", "simulator 'sim'")])
        _hooks.on_running("brokers", lambda: [_hooks.Running("broker", "b", "broker b")])
        assert [r.text for r in _hooks.running()] == ["broker b", "simulator 'sim'"]
        assert [r.name for r in _hooks.running("simulator")] == ["sim"]
        moved: List[tuple] = []
        _hooks.on_port("p", lambda hp: hp == "h:1", lambda old, broker: moved.append((old, broker)))
        assert _hooks.port_used("h:1") and not _hooks.port_used("h:2")
        _hooks.port_moved("h:1", "the broker")
        assert moved == [("h:1", "the broker")]
        with pytest.raises(ValueError, match="use one of views, clients"):
            _hooks.on_cleanup("later", "x", lambda: 0)
    finally:
        for stage, registered in saved[0].items():
            _hooks._cleanups[stage] = registered
        _hooks._running.clear()
        _hooks._running.update(saved[1])
        _hooks._port_users.clear()
        _hooks._port_users.update(saved[2])
