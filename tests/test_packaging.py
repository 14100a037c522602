"""What ``pip install onepipe`` puts in site-packages: one ``onepipe`` package, nothing else.

The repository keeps the card's folders at its top (``app/``, ``agents/``, ...); the
distribution maps them under ``onepipe`` (pyproject ``package-dir``), so a developer's
own ``agents`` or ``tests`` package neither shadows onepipe nor is shadowed by it. This
builds the wheel from a copy of the checkout, installs it into an empty folder and
imports from another empty folder, as a user would.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.fixtures.paths import REPO

#: Repository folders installed as ``onepipe.<folder>``.
FOLDERS = ("app", "agents", "tables", "schemas", "sinks")
#: Top-level names that must not be importable after an install.
NOT_INSTALLED = (*FOLDERS, "tests", "bench")


def _project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_for_install() -> None:
    setuptools = _project()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {"onepipe"} | {
        ".".join(["onepipe", *init.parent.relative_to(REPO).parts])
        for folder in FOLDERS for init in (REPO / folder).rglob("__init__.py")}
    assert listed == folders
    assert setuptools["package-dir"] == {
        "onepipe": "onepipe", **{f"onepipe.{f}": f for f in FOLDERS}}


def test_an_installed_onepipe_is_one_package(tmp_path: Path) -> None:
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("onepipe", *FOLDERS):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    installed = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"bin"} == {"onepipe"}  # bin/ holds the console script
    entry_points = next(target.glob("onepipe-*.dist-info")) / "entry_points.txt"
    assert "onepipe = onepipe.app.cli:main" in entry_points.read_text()

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    probe = (
        "import importlib.util, onepipe, onepipe.agents.dedup.agent, onepipe.app.cli\n"
        "print(onepipe.__file__)\n"
        f"print(sorted(n for n in {NOT_INSTALLED!r} if importlib.util.find_spec(n)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=empty, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert Path(out[0]).is_relative_to(target)
    assert out[1] == "[]"


def _imported_distributions() -> dict[str, set[str]]:
    """Top-level modules the installed folders import, outside the standard library and
    onepipe, each with the files importing it."""
    found: dict[str, set[str]] = {}
    for folder in ("onepipe", *FOLDERS):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top != "onepipe":
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_module_the_package_imports_is_a_declared_dependency() -> None:
    # `pip install onepipe` (the Dockerfile's `pip install .`) installs [project]
    # dependencies only: a module imported by the package but declared among the dev
    # extras, or only reached through another package's requirements, fails a user's
    # worker at import (confluent-kafka, the hot paths' client, was in dev only).
    declared = {_normalized(re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0])
                for dep in _project()["project"]["dependencies"]}
    owners = importlib.metadata.packages_distributions()
    undeclared = {
        module: sorted(files)[:3]
        for module, files in _imported_distributions().items()
        if not any(_normalized(d) in declared for d in owners.get(module, []))}
    assert not undeclared, (
        f"imported by the package but not in pyproject's [project] dependencies: "
        f"{undeclared}")
