"""The package's shape (docs/architecture.md): no import cycles, nothing imports the CLI, measurement
stays out of the device package, and the controller is the only writer of a turn's trace."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "edgeagent"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every edgeagent module ``path`` imports (module level and inside functions), resolved to modules."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("edgeagent")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_import_graph_has_no_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycle.extend(path[path.index(dep):] + [node, dep] if dep in path else [node, dep])
                return True
            if state.get(dep) is None and visit(dep, path + [node]):
                return True
        state[node] = 2
        return False

    for node in sorted(edges):
        if state.get(node) is None and visit(node, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_nothing_imports_upward_into_the_cli():
    offenders = sorted(m for m, deps in graph().items()
                       if not m.startswith(("edgeagent.cli", "edgeagent.__main__")) and any(d.startswith("edgeagent.cli") for d in deps))
    assert not offenders, f"these import the command line: {offenders}"


def test_measurement_is_not_in_the_device_package():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for name in ("benchmarks", "matplotlib", "psutil", "tqdm", "tests"):
            assert not re.search(rf"^\s*(from|import) {name}\b", text, re.M), f"{path} imports {name}"


def test_only_the_controller_writes_trace_fields():
    """``trace.<field> =`` (or ``trace.a, trace.b = ...``) appears only in the turn controller."""
    writers = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\btrace\.\w+(\s*,\s*\w*\.?trace\.\w+)*\s*=[^=]", line):
                writers.append(f"{path.relative_to(REPO)}:{number}")
    assert writers and all(w.startswith("edgeagent/turn/controller.py") for w in writers), writers
