"""The floors of the package (README "Layout"): a module imports its own package and the floors
below it, never a floor above nor a sibling on its own floor, not even lazily inside a function
or for type checking only; and no modules import each other in a circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
#: Lowest first. A package may import the packages on the floors below its own.
FLOORS: list[set[str]] = [
    {"core"},  # errors, events, logs, request context, redaction
    {"catalog"},  # the config schema, zoo triggers, engines' config
    {"media", "runtimes", "tracking", "jobs"},  # the ground floor over the config
    {"families"},
    {"manager"},
    # Beside the manager: the language engines lease its memory (a launched engine, the local
    # engine's model); the manager never calls an engine.
    {"engines"},
    {"pipelines"},
    {"api"},
    {"ray"},  # the same API on Ray Serve, over the single-node app
    {"zooserve_bench"},  # the benchmarks, outside the service package
    {"cli"},  # `zooserve bench` imports zooserve_bench lazily
    {"__main__"},  # python -m zooserve
]
FLOOR_OF = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def module_name(path: Path, src: Path = SRC) -> str:
    return ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")


def source_files(src: Path = SRC) -> dict[str, Path]:
    """Every module of zooserve and zooserve_bench, by dotted name."""
    files = [*(src / "zooserve").rglob("*.py"), *(src / "zooserve_bench").rglob("*.py")]
    return {module_name(path, src): path for path in files}


def imported_modules(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every project module `module` imports, wherever the import stands (top level, inside a
    function, under TYPE_CHECKING). `from pkg import sub` names the submodule `pkg.sub`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                if child in known:
                    yield child
                elif base in known:
                    yield base


def package_of(module: str) -> str:
    """The floor-level package: `zooserve.manager.core` -> manager; the bench is one."""
    top, _, rest = module.partition(".")
    return top if top != "zooserve" else rest.partition(".")[0] or "zooserve"


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    files = source_files(src)
    known = set(files)
    return {
        module: {target for target in imported_modules(module, path, known) if target != module}
        for module, path in files.items()
    }


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    """`a -> b (why)` for each import from a package to one on its own floor or above."""
    found = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        for target in sorted(targets):
            goal = package_of(target)
            if goal in (source, "zooserve"):
                continue
            if FLOOR_OF[goal] > FLOOR_OF[source]:
                found.append(f"{module} -> {target} (up from {source} to {goal})")
            elif FLOOR_OF[goal] == FLOOR_OF[source]:
                found.append(f"{module} -> {target} (sideways: {source} and {goal} share a floor)")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_package_has_a_floor() -> None:
    packages = {package_of(module) for module in source_files()} - {"zooserve"}
    assert packages == set(FLOOR_OF), "place new packages in FLOORS (and the README layout)"


def test_the_package_root_imports_nothing_of_its_own() -> None:
    """Any floor may read zooserve.__version__, so the root must sit below them all."""
    assert import_graph()["zooserve"] == set()


def test_no_import_runs_up_a_floor_or_sideways() -> None:
    assert wrong_way_imports(import_graph()) == []


def test_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_the_walk_sees_lazy_and_type_only_imports_and_circles(tmp_path: Path) -> None:
    """The checks above would pass on a walk that misses imports: show it catches them."""
    package = tmp_path / "zooserve"
    for folder in ("core", "api"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from zooserve.api import b\n"
        "def later():\n    from . import c\n"
    )
    (package / "core" / "c.py").write_text("import zooserve.core.a\n")
    (package / "api" / "b.py").write_text("from zooserve.core import a\n")
    graph = import_graph(tmp_path)
    assert graph["zooserve.core.a"] == {"zooserve.api.b", "zooserve.core.c"}
    assert wrong_way_imports(graph) == ["zooserve.core.a -> zooserve.api.b (up from core to api)"]
    assert circles(graph) == [["zooserve.api.b", "zooserve.core.a", "zooserve.core.c"]]
