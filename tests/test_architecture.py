"""The shape of the house: light start-up, no runner/stage cycle, SQL only in the catalog package,
run-directory paths only in RunLayout."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "curate"
HEAVY = ("torch", "torchvision", "cleanlab", "pandas", "sklearn", "matplotlib")


def modules_loaded_by(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.splitlines()[-1].split())


@pytest.mark.parametrize("command", ["['stages']", "['validate', PIPELINE]", "['status', RUN]"])
def test_quick_commands_do_not_import_torch_or_cleanlab(command: str, pipeline_file: Path, tmp_path: Path):
    from curate.cli import main

    assert main(["run", str(pipeline_file), "--no-progress", "--only", "synsets"]) == 0
    code = (f"PIPELINE, RUN = {str(pipeline_file)!r}, {str(tmp_path / 'run')!r}\n"
            f"from curate.cli import main\nassert main({command}) == 0")
    loaded = modules_loaded_by(code)
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)


def test_the_runner_imports_no_stage():
    loaded = modules_loaded_by("import curate.runner")
    assert "curate.stages.base" in loaded
    assert not [m for m in loaded if m.startswith("curate.stages.") and m != "curate.stages.base"]


def string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def source_files(exclude: str) -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if exclude not in p.relative_to(PACKAGE).as_posix()]


def test_no_sql_outside_the_catalog_package():
    sql = re.compile(r"\b(SELECT\b.*\bFROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX)|"
                     r"DROP TABLE|ALTER TABLE|PRAGMA \w+)\b", re.DOTALL)
    found = [f"{p.relative_to(REPO)}:{line}" for p in source_files("catalog/") for line, text in string_constants(p)
             if sql.search(text)]
    assert found == []


def path_joins(path: Path) -> list[tuple[int, str]]:
    """``something / "name"`` joins in a module: (line, name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.right.value) for n in ast.walk(tree)
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and isinstance(n.right, ast.Constant)
            and isinstance(n.right.value, str)]


def test_run_directory_paths_are_joined_only_in_the_layout():
    names = {"catalog.sqlite", "config.yaml", "images", "logs", "curate.log", "report", "export", "benchmark",
             ".lock"}
    found = [f"{p.relative_to(REPO)}:{line} / {text!r}" for p in source_files("layout.py")
             for line, text in path_joins(p) if text in names]
    assert found == []


# --------------------------------------------------------------------------- import circles


def module_name(path: Path) -> str:
    """``curate/sources/local.py`` -> ``curate.sources.local``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_statements(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, in function and class bodies too, except ``if TYPE_CHECKING:`` ones."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = node.orelse if isinstance(node, ast.If) and is_type_checking(node.test) else (
            list(ast.iter_child_nodes(node)))
        pending += children
    return found


def packages_of(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b]``: the packages whose ``__init__`` runs before ``a.b.c`` does."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
                     modules: set[str]) -> tuple[set[str], set[str]]:
    """(modules named, their enclosing packages) by one statement of ``importer``, within ``modules``."""
    if isinstance(node, ast.Import):
        named = {alias.name for alias in node.names}
        return named, {p for n in named for p in packages_of(n)}
    base = node.module or ""
    if node.level:
        anchor = importer.split(".")[: len(importer.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    named = submodules | ({base} if len(submodules) < len(node.names) else set())
    packages = set(packages_of(base)) | ({base} if submodules and base not in named else set())
    return named, packages


def import_graph() -> dict[str, set[str]]:
    """Which module of curate/ runs which when it is imported (the edges of the import graph).

    The rule, statement by statement (anywhere in the module: a function body's import runs when the function
    is called, and a circle through it is still a circle, so those count too):

    - ``import a.b.c`` names ``a.b.c``; ``from a.b import c`` names ``a.b.c`` when ``c`` is a submodule
      (a file or package), otherwise ``a.b`` (``c`` is an attribute of ``a.b``'s ``__init__``); ``from . import x``
      and other relative forms are resolved against the importing module first.
    - Importing ``a.b.c`` also runs the ``__init__`` of its packages ``a`` and ``a.b``: edges to them too,
      except to the importer's own packages. Those run before the importer itself (Python imports
      ``curate.sources`` before ``curate.sources.local``), so a plug-in importing ``curate.sources.base`` adds no
      edge to ``curate.sources``, whose ``__init__`` imports the plug-ins to register them (nor does a package's
      ``__init__`` get an edge to itself by importing its own submodules). A module that names
      its own package (``from curate.sources import SOURCES`` inside ``curate/sources/``) does get the edge:
      it needs that ``__init__`` finished, and it is not while the ``__init__`` imports the module.
    - Imports inside ``if TYPE_CHECKING:`` never run, so they are left out (its ``else:`` branch is kept).
    - Only modules of curate/ are nodes; ``importlib`` calls are not followed (curate has none).
    """
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        own = {name, *packages_of(name)}
        edges: set[str] = set()
        for node in import_statements(ast.parse(path.read_text(encoding="utf-8"))):
            named, packages = imported_targets(node, name, path.name == "__init__.py", modules)
            edges |= named | (packages - own)
        graph[name] = edges & modules
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
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
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest import chain from ``start`` back to ``start`` inside one component (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & within):
                if child == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(came_from[chain[-1]])
                    return [start, *reversed(chain[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    return []


def describe_circles(graph: dict[str, set[str]]) -> list[str]:
    """One line per circle: each component's shortest cycles (one through each member), shortest first."""
    lines = []
    circles = [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph[c[0]]]
    for component in sorted(circles, key=len):
        cycles = {tuple(shortest_cycle(graph, m, set(component))) for m in component}
        lines.append(f"a circle of {len(component)} modules: {', '.join(component)}")
        lines += [f"  {len(c) - 1}: {' -> '.join(c)}" for c in sorted(cycles, key=lambda c: (len(c), c))]
    return lines


def targets(code: str, importer: str, is_package: bool = False) -> tuple[set[str], set[str]]:
    modules = {"curate", "curate.sources", "curate.sources.base", "curate.sources.local", "curate.x", "curate.x.y"}
    statements = import_statements(ast.parse(code))
    assert len(statements) == 1
    return imported_targets(statements[0], importer, is_package, modules)


def test_the_import_graph_follows_the_rules_it_states():
    assert targets("import curate.x.y", "curate.a") == ({"curate.x.y"}, {"curate", "curate.x"})
    assert targets("from curate.sources import SOURCES", "curate.sources.local") == (
        {"curate.sources"}, {"curate"})  # a name of the package's __init__: the package itself
    assert targets("from curate.sources import base", "curate.a") == ({"curate.sources.base"},
                                                                      {"curate", "curate.sources"})
    assert targets("from . import base", "curate.sources.local")[0] == {"curate.sources.base"}
    assert targets("from .base import X", "curate.sources", is_package=True)[0] == {"curate.sources.base"}
    assert targets("def f():\n    if True:\n        import curate.x\n", "curate.a")[0] == {"curate.x"}
    code = "if TYPE_CHECKING:\n    import curate.x\nelse:\n    import curate.x.y\n"
    assert [n.names[0].name for n in import_statements(ast.parse(code))] == ["curate.x.y"]
    graph = import_graph()
    assert "curate.stages.annotate" in graph["curate.stages"]  # imported inside a function
    assert "curate.vision" in graph["curate.stages.noise"]  # the package of a module imported from elsewhere
    assert "curate.sources" not in graph["curate.sources.local"]  # its own package, not named by it
    assert describe_circles({"a": {"b"}, "b": {"a", "c"}, "c": {"c"}}) == [
        "a circle of 1 modules: c", "  1: c -> c", "a circle of 2 modules: a, b", "  2: a -> b -> a",
        "  2: b -> a -> b"]


def test_there_is_no_import_circle_in_curate():
    circles = describe_circles(import_graph())
    assert not circles, "import circles in curate/ (module -> module it imports):\n" + "\n".join(circles)
