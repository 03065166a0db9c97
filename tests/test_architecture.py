"""The layers stay apart: the library never imports the application, and no import cycle exists.

Every module of ``bamco_fast`` (the library, ``bamco_fast/``), ``bamco_fast.kernels`` (``kernels/``) and
``bamco_fast.train`` (the application, ``python/train/``) is parsed, and each import it makes (at module
level or inside a function; relative imports resolved) becomes an edge to the project module it names.
A package's ``__init__`` is a module like any other, so importing a package counts as importing it.
The rules are those of ``docs/architecture.md``; sizes are checked in the same spirit.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "bamco_fast": ROOT / "bamco_fast",
    "bamco_fast.kernels": ROOT / "kernels",
    "bamco_fast.train": ROOT / "python" / "train",
}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import of ``name`` loads last (the longest known prefix)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for type checkers only never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if (
                isinstance(child, ast.If)
                and isinstance(child.test, ast.Name)
                and child.test.id == "TYPE_CHECKING"
            ):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _layer(module: str) -> str:
    return "app" if module.startswith("bamco_fast.train") else "library"


def test_the_library_never_imports_the_application():
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _layer(module) == "library"
        for target in targets
        if _layer(target) == "app"
    )
    assert not wrong, wrong


def test_the_two_stages_never_import_each_other():
    wrong = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        for a, b in (("pretrain", "vqa"), ("vqa", "pretrain"))
        if module.startswith(f"bamco_fast.train.{a}") and target.startswith(f"bamco_fast.train.{b}")
    ]
    assert not wrong, wrong


def _cycle_from(start: str) -> list[str] | None:
    stack, on_path = [(start, iter(sorted(GRAPH[start])))], [start]
    seen = {start}
    while stack:
        _node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            on_path.pop()
        elif child == start:
            return [*on_path, start]
        elif child not in seen:
            seen.add(child)
            stack.append((child, iter(sorted(GRAPH[child]))))
            on_path.append(child)
    return None


def _is_package_back_edge(cycle: list[str]) -> bool:
    """A module importing its own package's ``__init__`` (re-exports) is not a design cycle; any other is."""
    return all(
        b.startswith(a + ".") or a.startswith(b + ".") or b == a.rpartition(".")[0]
        for a, b in itertools.pairwise(cycle)
    )


def test_the_import_graph_has_no_cycle():
    cycles = []
    for module in sorted(GRAPH):
        cycle = _cycle_from(module)
        if cycle and not _is_package_back_edge(cycle):
            cycles.append(" -> ".join(cycle))
    assert not cycles, "\n".join(cycles[:10])


def test_the_walk_finds_real_edges():
    """The test above can fail: the walk sees the imports it claims to see."""
    assert (
        "bamco_fast.inference.run_folder" in GRAPH["bamco_fast.predict"]
        or "bamco_fast.inference" in GRAPH["bamco_fast.predict"]
    )
    assert "bamco_fast.train.core.loop" in GRAPH["bamco_fast.train.vqa.stage"]
    assert _cycle_from("bamco_fast.train.vqa.stage") is None


@pytest.mark.parametrize("limit", [450])
def test_no_source_file_is_longer_than_the_limit(limit):
    """Files of the library, the application and the benchmarks (Triton kernel files say why they are longer)."""
    long = []
    for folder in (ROOT / "bamco_fast", ROOT / "python", ROOT / "benchmarks", ROOT / "kernels"):
        for path in folder.rglob("*.py"):
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) > limit and not any("longer than 450 lines because" in line for line in lines[:40]):
                long.append(f"{path.relative_to(ROOT)}: {len(lines)}")
    assert not long, long


def test_no_function_is_longer_than_80_lines():
    """Outside the kernels (a Triton kernel may be longer, with a comment saying why)."""
    long = []
    for folder in (ROOT / "bamco_fast", ROOT / "python", ROOT / "kernels"):
        for path in folder.rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    size = node.end_lineno - node.lineno + 1
                    head = "\n".join(lines[max(0, node.lineno - 4) : node.lineno + 3])
                    if size > 80 and "longer than 80 lines because" not in head:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert not long, "\n".join(long)
