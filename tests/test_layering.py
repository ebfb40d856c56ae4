"""The house stays as drawn (docs/ARCHITECTURE.md): each floor imports only floors below it,
siblings on one floor stay independent, nothing imports in a circle, and the modules that
tables and sweep specs need never import torch.

Imports inside functions count too: a lazy import up the stack is still a dependency up
the stack. A new top-level module or package must be given a floor here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower numbers are lower floors. Packages on one floor may not import each other.
FLOORS: dict[str, int] = {
    "ajepa.contracts": 0,   # torch-free names and helpers shared by sweep and analysis
    "ajepa.seeding": 0,
    "ajepa.io_utils": 0,
    "ajepa.config": 1,
    "ajepa.config_doc": 2,  # renders docs/CONFIG.md from the config types
    "analysis": 2,          # MLflow runs -> tables, statistics, figures
    "ajepa.audio": 2,
    "ajepa.masks": 2,
    "ajepa.models": 2,
    "ajepa.data": 3,
    "ajepa.train": 4,
    "ajepa.eval": 5,
    "ajepa.sweep": 6,
    "ajepa.cli": 7,
    "ajepa": 8,  # the package's __init__: re-exports only
}
# What must build tables and validate specs on a machine without torch.
TORCH_FREE = ("ajepa.contracts", "ajepa.seeding", "ajepa.io_utils", "ajepa.config", "analysis", "ajepa.cli.tables")


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("ajepa", "analysis"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _floor_of(module: str) -> tuple[str, int]:
    """The floor entry a module belongs to: its longest listed prefix."""
    best = max((key for key in FLOORS if module == key or module.startswith(key + ".")), key=len, default=None)
    if best is None:
        pytest.fail(f"{module} has no floor: add it (or its package) to FLOORS in tests/test_layering.py")
    return best, FLOORS[best]


def _imports(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """First-party modules imported by a file (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES}
            out |= submodules or {base}
    return {name for name in out if name.split(".")[0] in ("ajepa", "analysis")}


def test_every_import_goes_down_the_floors():
    wrong = []
    for module, path in MODULES.items():
        key, floor = _floor_of(module)
        for target in _imports(path, module):
            if target not in MODULES and target.rpartition(".")[0] not in MODULES:
                continue
            target_key, target_floor = _floor_of(target)
            if target_key == key or target_key == "ajepa" and target != "ajepa":
                continue
            if target_floor >= floor:
                wrong.append(f"{module} (floor {floor}) imports {target} (floor {target_floor})")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(sorted(wrong))


def test_no_module_level_import_cycles():
    graph = defaultdict(set)
    for module, path in MODULES.items():
        # an edge to one's own package (`from ajepa.masks import x` inside ajepa.masks) is
        # how packages re-export, not a dependency between jobs
        graph[module] = {t for t in _imports(path, module, top_level_only=True)
                         if t in MODULES and t != module and not module.startswith(t + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_torch_free_modules_do_not_import_torch():
    heavy = ("torch", "torchaudio", "timm", "ray")
    wrong = []
    for module, path in MODULES.items():
        if not any(module == t or module.startswith(t + ".") for t in TORCH_FREE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{module} imports {n}" for n in names if n.split(".")[0] in heavy]
    assert not wrong, "\n".join(wrong)


def test_the_layering_check_can_fail(tmp_path, monkeypatch):
    """A planted upward import is caught (so the checks above are not vacuous)."""
    planted = ROOT / "ajepa" / "models" / "_planted_upward_import.py"
    monkeypatch.setitem(MODULES, "ajepa.models._planted_upward_import", planted)
    planted_text = "from ajepa.train import Trainer\n"
    original_read = Path.read_text
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: planted_text if self == planted else original_read(self, *a, **k))
    with pytest.raises(AssertionError, match="_planted_upward_import .floor 2. imports ajepa.train"):
        test_every_import_goes_down_the_floors()
