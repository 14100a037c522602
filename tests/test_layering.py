"""The architecture as a test: which room may import which, and no cycles.

STYLE.md's direction of imports: ``schemas`` is the floor; ``sinks`` (writers and formats)
and ``tables`` (state) build on it and not on each other; ``agents`` wire the three
together; ``app`` assembles the worker on top. Inside ``agents`` each capability is a
room of its own: it imports its own modules and the shared batch skeleton
(``agents.batch``), never another capability's; what two of them share lives a floor
down. Every import anywhere (function-level and ``TYPE_CHECKING`` ones included) counts,
so no cycle can hide behind a late import.

Each rule is checked on the real tree and, with a planted import, shown to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.fixtures.paths import REPO

#: The folders installed under ``onepipe``, as (folder, package name).
PACKAGES = {"app": "onepipe.app", "agents": "onepipe.agents", "tables": "onepipe.tables",
            "schemas": "onepipe.schemas", "sinks": "onepipe.sinks"}
#: room -> rooms it must never import.
FORBIDDEN = {
    "schemas": {"app", "agents", "tables", "sinks"},
    "sinks": {"app", "agents", "tables"},
    "tables": {"app", "agents", "sinks"},
    "agents": {"app"},
}
#: The room inside agents every capability may use.
SHARED_AGENT_ROOM = "batch"
#: Longest module, in lines (STYLE.md: split a file before it passes ~400).
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {"onepipe": REPO / "onepipe" / "__init__.py"}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, source: str, known: Mapping[str, Path]) -> set[str]:
    """The onepipe modules ``source`` (module ``name``) imports, anywhere in the file.

    ``from onepipe.x import y`` counts as an import of ``onepipe.x.y`` when that is a
    module, else of ``onepipe.x``; relative imports are resolved against ``name``.
    """
    package = name if known.get(name, Path()).name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {m for m in found if m == "onepipe" or m.startswith("onepipe.")}


def graph(sources: Mapping[str, str] | None = None) -> dict[str, set[str]]:
    """module -> the onepipe modules it imports (``sources`` replaces file contents).

    Importing ``a.b.c`` first runs the ``__init__`` of ``a.b``: that package counts as
    imported too (unless the importer lives inside it, where it is already running), so
    a cycle through a package's ``__init__`` is found like any other.
    """
    known = modules()
    texts = {name: path.read_text() for name, path in known.items()}
    texts.update(sources or {})
    edges = {name: imports_of(name, text, known) for name, text in texts.items()}
    for name, targets in edges.items():
        targets |= {package for target in list(targets)
                    for package in _packages_of(target, known)
                    if package != name and not name.startswith(package + ".")}
    return edges


def _packages_of(module: str, known: Mapping[str, Path]) -> Iterator[str]:
    """The packages whose ``__init__`` an import of ``module`` runs (below onepipe)."""
    parts = module.split(".")
    for end in range(2, len(parts)):
        package = ".".join(parts[:end])
        if package in known:
            yield package


def room(module: str) -> str:
    """``agents`` of ``onepipe.agents.dedup.plan``; ``onepipe`` for the public module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "onepipe"


def capability(module: str) -> str | None:
    """``dedup`` of ``onepipe.agents.dedup.plan``; None outside an agents subpackage."""
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "agents" else None


def layering_violations(edges: Mapping[str, set[str]]) -> list[str]:
    found = []
    for module, targets in edges.items():
        for target in targets:
            if room(target) in FORBIDDEN.get(room(module), set()):
                found.append(f"{module} -> {target}")
    return sorted(found)


def capability_violations(edges: Mapping[str, set[str]]) -> list[str]:
    """Imports from one agents capability into another's modules (or its package)."""
    found = []
    for module, targets in edges.items():
        own = capability(module)
        if own is None:
            continue
        for target in targets:
            parts = target.split(".")
            other = parts[2] if len(parts) > 2 and parts[1] == "agents" else None
            if other is not None and other not in (own, SHARED_AGENT_ROOM):
                found.append(f"{module} -> {target}")
            if own == SHARED_AGENT_ROOM and other not in (None, SHARED_AGENT_ROOM):
                found.append(f"{module} -> {target}")
    return sorted(found)


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph is a few hundred nodes
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def bare_imports(source: str) -> Iterator[str]:
    """Imports of a folder by its repository name (``import app``): a second copy."""
    for node in ast.walk(ast.parse(source)):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                 and not node.level else [])
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield name


# ----------------------------------------------------------------- the rules


def test_rooms_import_only_downwards() -> None:
    assert layering_violations(graph()) == []


def test_capabilities_do_not_import_each_other() -> None:
    assert capability_violations(graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_no_type_checking_imports() -> None:
    """A ``TYPE_CHECKING`` import exists to dodge a cycle: the type lives in the wrong module.

    The public module is the exception: its names load lazily (a cheap ``import onepipe``),
    and its ``TYPE_CHECKING`` block tells type checkers what they are.
    """
    assert [name for name, path in modules().items()
            if name != "onepipe" and "TYPE_CHECKING" in path.read_text()] == []


def test_everything_imports_onepipe_by_its_installed_name() -> None:
    files = [p for folder in [*PACKAGES, "onepipe", "tests", "bench"]
             for p in sorted((REPO / folder).rglob("*.py"))]
    assert [f"{path.relative_to(REPO)}: {name}" for path in files
            for name in bare_imports(path.read_text())] == []


def test_every_room_states_its_contract() -> None:
    """Each room under agents, sinks and tables opens with the contract it keeps."""
    for folder in ("agents", "sinks", "tables"):
        for init in sorted((REPO / folder).glob("*/__init__.py")):
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            assert len(doc.splitlines()) >= 5, f"{init.relative_to(REPO)} states no contract"


def test_modules_stay_small() -> None:
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# --------------------------------------------- the checks fail when they should


@pytest.mark.parametrize(("module", "planted", "check"), [
    ("onepipe.tables.lifecycle", "from onepipe.sinks.lake import open_lake\n",
     layering_violations),
    ("onepipe.schemas.codec", "import onepipe.app.settings\n", layering_violations),
    ("onepipe.sinks.lake.store", "from onepipe.tables.kafka.clients import KafkaClients\n",
     layering_violations),
    ("onepipe.agents.checksum.raw", "from onepipe.agents.dedup.plan import PartitionWork\n",
     capability_violations),
    ("onepipe.agents.batch.agent", "from onepipe.agents.archive import ArchiveAgent\n",
     capability_violations),
    ("onepipe.agents.verify.stream",
     "def later() -> None:\n    from ..dedup import agent\n", capability_violations),
])
def test_a_planted_import_is_found(module: str, planted: str, check: object) -> None:
    path = modules()[module]
    edges = graph({module: path.read_text() + "\n" + planted})
    assert callable(check)
    assert check(edges) != []


def test_a_planted_cycle_is_found() -> None:
    module = "onepipe.schemas.errors"
    path = modules()[module]
    hidden = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
              "    from onepipe.schemas.codec import frame\n")
    found = cycles(graph({module: path.read_text() + "\n" + hidden}))
    assert any(module in component for component in found)


def test_a_cycle_through_a_package_init_is_found() -> None:
    """context -> readiness -> app.auth.store ran app.auth's __init__, whose gate
    imported app.web.http, which imports context: a cycle only import order showed."""
    module = "onepipe.app.readiness"
    path = modules()[module]
    planted = "\nfrom onepipe.app.auth.store import TokenStore\n"
    found = cycles(graph({module: path.read_text() + planted}))
    assert any(module in component and "onepipe.app.auth" in component
               for component in found), found


def test_a_planted_bare_import_is_found() -> None:
    assert list(bare_imports("from app.settings import Settings\n")) == ["app.settings"]
    assert list(bare_imports("import schemas.codec, json\n")) == ["schemas.codec"]
    assert list(bare_imports("from onepipe.app import settings\n")) == []
