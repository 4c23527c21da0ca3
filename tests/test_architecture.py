"""The floor plan holds: imports follow the layers of the data flow, no two modules import each
other, capabilities are declared rather than probed, and no module reads another's privates.

Layers, lowest first (docs/ARCHITECTURE.md): utils < envs < rollouts < world_models < agents <
evaluation < cli, bench (then scripts/). Read from the source with ``ast``: every import counts,
at module level or inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "utils": 0,
    "envs": 1,
    "rollouts": 2,
    "world_models": 3,
    "agents": 4,
    "evaluation": 5,
    "cli": 6,
    "bench": 6,
}
PACKAGE = "latentplay"


def modules(root: Path) -> dict[str, Path]:
    """``latentplay.<folder>.<module>`` -> file, for every package folder under ``root``."""
    out = {}
    for top in LAYERS:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([PACKAGE, *parts])] = path
    return out


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that module ``name`` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known:
                    found.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package up
                pkg = _package_of(name, path).split(".")
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:
                    found.add(sub)  # a submodule
                elif base in known:
                    found.add(base)  # a name defined in the module or package
    found.discard(name)
    return found


def layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} (layer {layer(src)}) imports {dst} (layer {layer(dst)})"
        for src, dsts in graph.items()
        for dst in dsts
        if layer(dst) > layer(src)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_imports_follow_the_layers_and_form_no_cycle() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 60 and all(m.split(".")[1] in LAYERS for m in graph)
    assert upward_imports(graph) == []
    assert cycles(graph) == []


def test_the_check_catches_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """Known answer: a planted upward import and a planted cycle are both reported."""
    for top in LAYERS:
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
    (tmp_path / "utils" / "io.py").write_text("from latentplay.evaluation import report\n")
    (tmp_path / "evaluation" / "report.py").write_text("import latentplay.utils.io\n")
    (tmp_path / "rollouts" / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "rollouts" / "b.py").write_text("from latentplay.rollouts.a import f\n")
    graph = import_graph(tmp_path)
    assert upward_imports(graph) == [
        "latentplay.utils.io (layer 0) imports latentplay.evaluation.report (layer 5)"
    ]
    assert cycles(graph) == [
        ["latentplay.evaluation.report", "latentplay.utils.io"],
        ["latentplay.rollouts.a", "latentplay.rollouts.b"],
    ]


def test_envs_and_the_config_glue_stay_free_of_torch() -> None:
    """envs/ never imports torch; neither do cli/ and what it imports (parsing a command line
    must not pay for torch: tests/test_configs.py checks the running import too)."""
    graph = import_graph(ROOT)
    mods = modules(ROOT)
    seen, todo = set(), [m for m in graph if m.startswith(("latentplay.envs", "latentplay.cli"))]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    for m in sorted(seen):
        tree = ast.parse(mods[m].read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
        assert not any(n == "torch" or n.startswith("torch.") for n in names), m


CAPABILITY_PROBES = re.compile(r"hasattr\(model|getattr\(model|\.name ==|name\", \"\"\) ==")


@pytest.mark.parametrize("folder", ["agents", "evaluation", "world_models", "scripts"])
def test_capabilities_are_declared_not_probed(folder: str) -> None:
    """Callers check a capability protocol (world_models/protocol.py), never ``hasattr`` on a
    model or a model's name."""
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if CAPABILITY_PROBES.search(line)
    ]
    assert hits == []


def _defined_privates(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, assignments (module, class or
    ``self.``/``cls.`` attributes), parameters."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_reads(root: Path) -> list[str]:
    """``obj._name`` read in a module that does not define ``_name`` (``self``, ``cls`` and
    ``super()`` aside), and private names imported from another project module."""
    out = []
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text())
        own = _defined_privates(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                attr = node.attr
                if not attr.startswith("_") or attr.startswith("__") or attr in own:
                    continue
                v = node.value
                if isinstance(v, ast.Name) and v.id in ("self", "cls"):
                    continue
                if isinstance(v, ast.Call) and getattr(v.func, "id", "") == "super":
                    continue
                out.append(f"{name}:{node.lineno}: .{attr}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        out.append(f"{name}:{node.lineno}: import {a.name}")
    return out


def test_no_module_reads_another_objects_privates() -> None:
    assert private_reads(ROOT) == []


def test_the_private_check_catches_a_read(tmp_path: Path) -> None:
    for top in LAYERS:
        (tmp_path / top).mkdir()
    (tmp_path / "agents" / "p.py").write_text(
        "class P:\n    def __init__(self):\n        self._x = 1\n"
    )
    (tmp_path / "evaluation" / "e.py").write_text("def f(p):\n    return p._x + p.y\n")
    (tmp_path / "bench" / "b.py").write_text("from latentplay.agents.p import _helper\n")
    assert private_reads(tmp_path) == [
        "latentplay.evaluation.e:2: ._x",
        "latentplay.bench.b:1: import _helper",
    ]
