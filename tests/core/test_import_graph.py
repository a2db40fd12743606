"""The packages' imports form no circle: every import counts, those under ``TYPE_CHECKING`` and
inside functions too, since a circle of meaning is one whichever way Python resolves it."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "bentoship": ROOT / "core/src/bentoship",
    "bentoship_airflow": ROOT / "airflow_provider/src/bentoship_airflow",
    "bentoship_kfp": ROOT / "kfp_components/src/bentoship_kfp",
    "flytekitplugins.bentoship": ROOT / "flyte_plugin/src/flytekitplugins/bentoship",
}


def modules(package: str, folder: Path) -> dict[str, tuple[Path, bool]]:
    """Each module's dotted name: its file, and whether it is a package's ``__init__``."""
    found = {}
    for path in folder.rglob("*.py"):
        parts = [*package.split("."), *path.relative_to(folder).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imported(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports (a name taken from a package is
    its submodule when there is one)."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return (found & known) - {name}


def import_graph(packages: dict[str, Path]) -> dict[str, set[str]]:
    everything = {}
    for package, folder in packages.items():
        everything.update(modules(package, folder))
    known = set(everything)
    return {name: imported(name, *where, known) for name, where in everything.items()}


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph(PACKAGES)
    assert len(graph) > 150 and "bentoship.server.rollout.reconcile" in graph
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        pytest.fail(f"an import circle: {' -> '.join(error.args[1])}")


def test_a_circle_is_found_and_named(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "page.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .report import Report\n"
    )
    (tmp_path / "report.py").write_text("def html():\n    from .page import render\n")
    graph = import_graph({"pkg": tmp_path})
    assert graph == {"pkg": set(), "pkg.page": {"pkg.report"}, "pkg.report": {"pkg.page"}}
    with pytest.raises(CycleError):
        TopologicalSorter(graph).prepare()
