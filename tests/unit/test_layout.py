"""The package's shape: imports point one way (no circle, lazy imports included) and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gtcdemo"
MAX_LINES = 430  # "about 400": a module past this is two concerns, or one that needs splitting
# gtcdemo/__init__ resolves gtcdemo.get_target lazily (module __getattr__), so `import gtcdemo.bundle` loads neither
# target; that edge is the package's entry point, not a dependency of any module.
ENTRY_POINT = "gtcdemo"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every gtcdemo module ``path`` imports, at the top or inside a function (``from . import x`` included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):  # `if TYPE_CHECKING:` imports never run: not an edge
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
            block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gtcdemo")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("gtcdemo"):
                continue
            for alias in node.names:  # `from . import load` imports the module gtcdemo.load
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in MODULES else module)
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    edges = {name: imports(path) for name, path in MODULES.items()}
    edges[ENTRY_POINT] = set()
    # a submodule's import runs its package's __init__ first: an edge to gtcdemo.x.y is also an edge to gtcdemo.x
    for name, targets in edges.items():
        for t in list(targets):
            parent = t.rsplit(".", 1)[0]
            if parent in MODULES and parent != ENTRY_POINT and not name.startswith(parent + ".") and parent != name:
                targets.add(parent)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_circle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_circle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_contract_imports_neither_target() -> None:
    """Everything above the contract sees only gtcdemo.target; only the factory (gtcdemo.targets) knows both."""
    edges = graph()
    for name in ("gtcdemo.target", "gtcdemo.bundle", "gtcdemo.load", "gtcdemo.metrics", "gtcdemo.plots"):
        reach, todo = set(), [name]
        while todo:
            for nxt in edges[todo.pop()] - reach:
                reach.add(nxt)
                todo.append(nxt)
        assert not reach & {"gtcdemo.local", "gtcdemo.cluster", "gtcdemo.targets"}, (name, sorted(reach))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_large(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines: split it by concern"
