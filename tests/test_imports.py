"""The package's import graph: no cycles, and every module imports only its own layer or below.

The layers (DESIGN.md, "Layers"), bottom to top: the base utilities, `data`, the core (models,
methods, Eq. 13, the metrics and the scores record), the engine (config, training, evaluation,
runs, sweeps), the report (tables, prose, figures, widgets) and the book's build tools (the
runbook, the Sphinx extension, how notebooks display tables). A `__main__` module is an entry
point: nothing imports it, so it may import from any layer. Every import counts, lazy ones
inside functions too; only imports under `if TYPE_CHECKING:` (annotations) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "csoa_nb"

#: Layer of each module, by the longest matching prefix (a package name covers its modules).
LAYERS: dict[str, int] = {
    "csoa_nb": 0,
    "csoa_nb.base": 0,
    "csoa_nb.data": 1,
    "csoa_nb.core": 2,
    "csoa_nb.methods": 2,
    "csoa_nb.engine": 3,
    "csoa_nb.report": 4,
    "csoa_nb.book": 5,
}
LAYER_NAMES = ("base", "data", "core", "engine", "report", "book")
ENTRY_POINT = len(LAYER_NAMES)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(tree: ast.AST, modules: set[str]) -> set[str]:
    """The csoa_nb modules `tree` imports (a name imported from a package that is itself a
    module of `modules`, e.g. `from csoa_nb import plots`, counts as that module)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "csoa_nb")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "csoa_nb":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p): p for p in sorted(package.rglob("*.py"))}
    names = set(files)
    return {
        name: imported_modules(ast.parse(path.read_text(encoding="utf-8")), names) - {""}
        for name, path in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan), each sorted; a module that
    imports itself is a cycle of one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def layer_of(module: str) -> int:
    if module.split(".")[-1] == "__main__":
        return ENTRY_POINT
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                bad.append(
                    f"{module} ({LAYER_NAMES[layer_of(module)]}) imports {target} "
                    f"({LAYER_NAMES[layer_of(target)]})"
                )
    return bad


# ---------------------------------------------------------------------------------------- tests
def test_cycle_finder_on_a_planted_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_collection_skips_type_checking_and_sees_lazy_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "from csoa_nb import plots\n"
        "if TYPE_CHECKING:\n    from csoa_nb.core.models import X\n"
        "def f():\n    from csoa_nb.data.cub import CUB200\n    import csoa_nb.core.metrics\n"
    )
    modules = {"csoa_nb", "csoa_nb.report.plots", "csoa_nb.plots", "csoa_nb.data.cub"}
    assert imported_modules(ast.parse(source), modules) == {
        "csoa_nb.plots", "csoa_nb.data.cub", "csoa_nb.core.metrics"
    }


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)  # KeyError names a module that LAYERS does not place


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("layer", LAYER_NAMES[:-1])
def test_no_module_imports_a_higher_layer(layer):
    graph = import_graph()
    bad = [line for line in layer_violations(graph) if line.split(" (")[1].startswith(layer)]
    assert bad == [], "\n".join(bad)


#: Libraries that load torchvision, whose import costs about 2 s (it loads torch._dynamo) in
#: every notebook kernel and process: the package imports them where they are used, so that
#: reading results never pays for them.
LAZY_LIBRARIES = ("torchvision", "pytorch_grad_cam")


def module_level_imports(tree: ast.Module) -> set[str]:
    """The top-level package names that `tree` imports when the module is imported: its
    statements outside functions and classes (inside `if`, `try` and `with` too)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_module_imports_torchvision_when_it_is_imported():
    eager = {
        module_name(path): sorted(module_level_imports(ast.parse(path.read_text("utf-8")))
                                  & set(LAZY_LIBRARIES))
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    eager = {name: libraries for name, libraries in eager.items() if libraries}
    assert not eager, f"import these inside the functions that use them: {eager}"
    # the walk sees imports at the top and inside blocks, not inside functions
    tree = ast.parse("import os\ntry:\n    import torchvision.ops\nexcept ImportError:\n"
                     "    pass\ndef f():\n    import pytorch_grad_cam\n")
    assert module_level_imports(tree) == {"os", "torchvision"}
