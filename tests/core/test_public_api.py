"""The public surface of ``bentoship``: what the wrappers may import, and client parity."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import bentoship
from bentoship import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[2]
WRAPPER_SOURCES = [
    ROOT / "airflow_provider" / "src",
    ROOT / "kfp_components" / "src",
    ROOT / "flyte_plugin" / "src",
    ROOT / "dags_examples",
]


def bentoship_imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every import from bentoship in one file; name "" for `import`."""
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bentoship" or node.module.startswith("bentoship."):
                found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "bentoship" or alias.name.startswith("bentoship."):
                    found.append((alias.name, "", node.lineno))
    return found


def private_use(module: str, name: str) -> str | None:
    """Why importing ``name`` from ``module`` is not public use, or None when it is."""
    if any(part.startswith("_") for part in module.split(".")):
        return f"{module} is a private module"
    public = getattr(importlib.import_module(module), "__all__", None)
    if public is None:
        return f"{module} has no __all__"
    if name and name not in public:
        return f"{name} is not in {module}.__all__"
    return None


def wrapper_files() -> list[Path]:
    return sorted(p for folder in WRAPPER_SOURCES for p in folder.rglob("*.py"))


def test_wrappers_import_only_public_names() -> None:
    files = wrapper_files()
    assert len(files) > 15
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {why}"
        for path in files
        for module, name, line in bentoship_imports(path)
        if (why := private_use(module, name)) is not None
    ]
    assert problems == []


def test_the_check_catches_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "wrapper.py"
    sample.write_text(
        "from bentoship.rollouts import judge\n"
        "from bentoship._http import Call\n"
        "from bentoship import Client\n"
        "import bentoship.steps\n"
    )
    verdicts = [private_use(m, n) for m, n, _ in bentoship_imports(sample)]
    assert verdicts == [
        "judge is not in bentoship.rollouts.__all__",
        "bentoship._http is a private module",
        None,
        None,
    ]


def test_every_public_name_resolves() -> None:
    for name in bentoship.__all__:
        assert getattr(bentoship, name) is not None, name
    assert issubclass(bentoship.BuildFailed, bentoship.BentoshipError)
    assert bentoship.RetryPolicy().attempts >= 1


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in ("close", "aclose")
    }


def test_async_client_has_every_method_of_the_client_with_the_same_signature() -> None:
    sync, asynchronous = public_methods(Client), public_methods(AsyncClient)
    assert len(sync) >= 16
    assert set(asynchronous) == set(sync)
    for name, signature in sync.items():
        assert asynchronous[name].parameters == signature.parameters, name
        method = getattr(AsyncClient, name)
        asynchronous_kind = inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(
            method
        )
        assert asynchronous_kind, name


@pytest.mark.parametrize(
    "module", ["bentoship.steps", "bentoship.errors", "bentoship.models", "bentoship.shadow"]
)
def test_public_submodules_declare_all(module: str) -> None:
    loaded = importlib.import_module(module)
    assert loaded.__all__
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.{name}"
