"""The folders' import rules, read from the source with ast: no import circle, bench/ and the product
packages import nothing from tests/, client/ has one composition root and runs no SQL."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("workflows", "activities", "models", "worker", "client", "web")
PACKAGES = (*PRODUCT, "support")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every absolute import of the file, also those inside functions (a deferred import is still a
    dependency): `from a.b import c` counts as a.b and a.b.c."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def import_graph(folders: tuple[str, ...]) -> dict[str, set[str]]:
    files = {module_name(p): p for p in python_files(*folders)}
    return {name: (imported(path) & files.keys()) - {name} for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    # The finder itself: a test that passes on any graph would prove nothing.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_project_imports_itself_round_a_circle() -> None:
    assert circles(import_graph(PACKAGES)) == []


def test_the_packages_import_each_other_one_way() -> None:
    modules = import_graph(PACKAGES)
    packages: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for module, others in modules.items():
        packages[module.split(".")[0]] |= {o.split(".")[0] for o in others} - {module.split(".")[0]}
    assert circles(packages) == [], packages
    # Orchestration and the data model depend on no side effects.
    assert packages["models"] == set()
    assert packages["workflows"] <= {"models"}
    # The site reads; it never starts work the way the client does.
    assert "client" not in packages["web"]


def test_bench_and_the_product_import_nothing_from_tests() -> None:
    offending = {
        str(path.relative_to(ROOT)): sorted(n for n in imported(path) if n.split(".")[0] == "tests")
        for path in python_files("bench", *PACKAGES)
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_product_imports_nothing_from_support() -> None:
    offending = {
        str(path.relative_to(ROOT)): sorted(n for n in imported(path) if n.split(".")[0] == "support")
        for path in python_files(*PRODUCT)
    }
    assert {path: names for path, names in offending.items() if names} == {}


def _runtime_imports(path: Path) -> set[str]:
    """Imports outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_client_runs_no_sql() -> None:
    """SQL lives in activities/ (activities/services/ for the CLI); the client may only name the
    database's exceptions."""
    offending = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _runtime_imports(path) if n.split(".")[0] == "sqlalchemy" and n != "sqlalchemy.exc"
        )
        for path in python_files("client")
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_cli_reads_its_settings_in_one_place() -> None:
    """One composition root per invocation (worker/context.py's Context, built in client/cli.py)."""
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in python_files("client")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Settings"
    ]
    assert len(calls) == 1 and calls[0].startswith("client/cli.py:"), calls
