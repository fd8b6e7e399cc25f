"""The package's import graph: no cycle, no upward edge, light layers stay light.

Every module of ``lit_automl``, ``lit_automl.callbacks`` and ``lit_automl.datamodules`` is read with
``ast`` (nothing is imported); its imports, at module level and inside functions alike (an import
in a function runs the first time the function does), become edges ``importer -> imported``.
Imports under ``if TYPE_CHECKING:`` are for type hints only and never run, so they are left out.

Layers, lowest first; a module may import its own group and any lower layer::

    helpers      _checks (standard library only), rng, distributed, storage, threads, the root package
    datamodules  the data: import nothing of lit_automl but _checks and rng
    spaces       what can be built: no training logic
    callbacks    search-time control, through modules' documented attributes
    nas, meta    the methods: they do not import each other but for ALLOWED_ACROSS
    run_config   config -> (model, datamodule, trainer)
    hpo          Optuna outer loops: a trial is a run of the recipe, built by run_config
    cli          argv dispatch

An edge outside these rules must be listed, with its reason, in ALLOWED_ACROSS or ALLOWED_UP.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"lit_automl": ROOT / "lit_automl", "lit_automl.callbacks": ROOT / "callbacks",
            "lit_automl.datamodules": ROOT / "datamodules"}

HELPERS = {"lit_automl", "lit_automl._checks", "lit_automl.rng", "lit_automl.distributed", "lit_automl.storage",
           "lit_automl.console", "lit_automl.resume", "lit_automl.nonfinite", "lit_automl.threads"}
LAYERS = {"helpers": 0, "datamodules": 1, "spaces": 2, "callbacks": 3, "nas": 4, "meta": 4,
          "run_folders": 4, "run_config": 5, "hpo": 6, "cli": 7}
ALLOWED_ACROSS: Set[Tuple[str, str]] = set()
"""Edges between the method groups (nas, meta) that are needed, as ``(importer, imported)``."""
ALLOWED_ACROSS.add(("lit_automl.nas.update_rules", "lit_automl.meta.sign_optimizers"))
# the rule language's decay operands are the sign-decay schedules PowerSign / AddSign define (Bello et al. 2017 Sec. 5)
ALLOWED_ACROSS.add(("lit_automl.meta.simulate", "lit_automl.nas.policy_gradient"))
# learning to simulate updates its psi policy with the one REINFORCE + EMA baseline (Ruiz et al. 2019 Sec. 3)
ALLOWED_ACROSS.add(("lit_automl.meta.simulate", "lit_automl.nas.controller"))
# ... and its policy="controller" is the project's one controller over a grid of psi
ALLOWED_UP: Set[Tuple[str, str]] = set()
"""Upward edges that are needed, as ``(importer, imported)``: none."""

Edge = Tuple[str, str, int]  # importer, imported, line


def _modules() -> Dict[str, Path]:
    """Every module's dotted name and file (a package's is its ``__init__.py``)."""
    found: Dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _runtime_imports(tree: ast.AST) -> Iterator[ast.stmt]:
    """Import statements that run: anywhere but under ``if TYPE_CHECKING:``."""
    stack: List[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _known(name: str) -> Optional[str]:
    """``name`` or its longest prefix that is a module of ours (``None`` for other packages)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges(name: str, path: Path) -> Iterator[Edge]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            known = _known(target)
            if known is not None and known != name:
                yield name, known, node.lineno


EDGES: List[Edge] = [edge for name, path in MODULES.items() for edge in _edges(name, path)]


def _group(module: str) -> str:
    """The layer group of a module: helpers, datamodules, spaces, callbacks, nas, hpo, meta, run_config, cli."""
    if module in HELPERS:
        return "helpers"
    group = module.split(".")[1]
    if group not in LAYERS:
        raise AssertionError(f"{module} belongs to no layer; add its group to LAYERS in tests/test_imports.py")
    return group


def _where(edge: Edge) -> str:
    importer, imported, line = edge
    return f"{importer} -> {imported} ({MODULES[importer].relative_to(ROOT)}:{line})"


def test_every_module_is_found_and_parsed():
    assert {"lit_automl.cli", "lit_automl.run_config", "lit_automl.storage", "lit_automl.callbacks.optuna_pruning",
            "lit_automl.datamodules.digits", "lit_automl.nas.evaluator"} <= set(MODULES)
    assert any(imported == "lit_automl.storage" for _, imported, _ in EDGES)


def test_no_import_cycle():
    graph: Dict[str, Dict[str, int]] = {}
    for importer, imported, line in EDGES:
        graph.setdefault(importer, {}).setdefault(imported, line)
    cycles = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            cycles.append(" -> ".join(_cycle_through(graph, component)))
    assert not cycles, "import cycles (module -> module at file:line):\n" + "\n".join(cycles)


def _strongly_connected(graph: Dict[str, Dict[str, int]]) -> List[Set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components: List[Set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
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
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _cycle_through(graph: Dict[str, Dict[str, int]], component: Set[str]) -> List[str]:
    """One cycle inside ``component``, each step written ``module (file:line)``: a path back to its start."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to ``start``
        node = frontier.pop(0)
        for child in sorted(graph.get(node, {})):
            if child == start:
                steps = paths[node] + [start]
                return [f"{a} ({MODULES[a].relative_to(ROOT)}:{graph[a][b]})" for a, b in zip(steps, steps[1:])] + [start]
            if child in component and child not in paths:
                paths[child] = paths[node] + [child]
                frontier.append(child)
    raise AssertionError(f"no cycle found through {sorted(component)}")


def test_imports_point_down_the_layers():
    upward = []
    across = []
    for edge in EDGES:
        importer, imported, _ = edge
        source, target = _group(importer), _group(imported)
        if source == target:
            continue
        if LAYERS[target] > LAYERS[source] and (importer, imported) not in ALLOWED_UP:
            upward.append(f"{_where(edge)}: {source} may not import {target}")
        elif LAYERS[target] == LAYERS[source] and (importer, imported) not in ALLOWED_ACROSS:
            across.append(f"{_where(edge)}: {source} and {target} do not import each other")
    assert not upward + across, "imports against the layers:\n" + "\n".join(upward + across)


def test_datamodules_import_only_checks_and_rng_from_lit_automl():
    allowed = {"lit_automl._checks", "lit_automl.rng"}
    bad = [_where(edge) for edge in EDGES
           if _group(edge[0]) == "datamodules" and _group(edge[1]) != "datamodules" and edge[1] not in allowed]
    assert not bad, "datamodules import from the methods:\n" + "\n".join(bad)


def test_checks_imports_only_the_standard_library():
    tree = ast.parse(MODULES["lit_automl._checks"].read_text())
    names = {alias.name for node in _runtime_imports(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in _runtime_imports(tree) if isinstance(node, ast.ImportFrom) and node.module}
    outside = sorted(n for n in names if n.split(".")[0] not in sys.stdlib_module_names)
    assert not outside, f"lit_automl/_checks.py imports outside the standard library: {outside}"


@pytest.mark.parametrize("module, heavy", [
    ("lit_automl.spaces", ("pytorch_lightning", "lightning", "optuna", "matplotlib")),
    ("lit_automl.cli", ("torch", "pytorch_lightning", "optuna", "scipy", "matplotlib")),
])
def test_light_modules_stay_light(module, heavy):
    code = f"import sys, {module}; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"`import {module}` imports {done.stdout.split()}"
