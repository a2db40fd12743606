"""Fixtures for the KFP tests: kfp.local in this environment, and a guard against pip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bentoship.server import LocalControlPlane


@pytest.fixture
def kfp_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """``init(name)`` starts kfp.local (SubprocessRunner, use_venv=False) on a fresh pipeline
    root and returns it. Any task command that would pip-install fails the test."""
    from kfp import local
    from kfp.local import config, subprocess_task_handler

    real = subprocess_task_handler.run_local_subprocess
    commands: list[str] = []

    def no_pip(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        text = " ".join(full_command)
        commands.append(text)
        if "pip install" in text:
            raise AssertionError(f"a task would pip-install into the test environment: {text}")
        return real(full_command=full_command, env_vars=env_vars)

    monkeypatch.setattr(subprocess_task_handler, "run_local_subprocess", no_pip)

    def init(name: str) -> Path:
        root = tmp_path / f"kfp-{name}"
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
        return root

    yield init
    config.LocalExecutionConfig.instance = None


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[LocalControlPlane], None]:
    """Point tasks at a control plane through BENTO_CLOUD_API_ENDPOINT/_KEY, as a Kubernetes
    secret exposed as environment variables does in a cluster."""

    def use(plane: LocalControlPlane) -> None:
        assert plane.connection is not None
        monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", plane.connection.endpoint)
        monkeypatch.setenv("BENTO_CLOUD_API_KEY", plane.connection.token)

    return use
