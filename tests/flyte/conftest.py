"""Fixtures for the Flyte plugin's tests: a client for the module's control plane."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["FLYTE_LOCAL_CACHE_ENABLED"] = "false"

from flytekit.image_spec import ImageSpec

from bentoship import Client
from bentoship.server import LocalControlPlane


def client_for(plane: LocalControlPlane) -> Client:
    assert plane.connection is not None
    return Client(plane.connection.endpoint, plane.connection.token)


@pytest.fixture(autouse=True)
def image_counts_as_pushed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serializing a task with an ``ImageSpec`` asks the registry whether the image exists,
    and builds it when not. Say it exists, so that serialization neither calls a registry nor
    builds, with or without a Docker daemon on the machine."""
    monkeypatch.setattr(ImageSpec, "exist", lambda self: True)


@pytest.fixture
def api(shared_plane: LocalControlPlane) -> Iterator[Client]:
    with client_for(shared_plane) as client:
        yield client


@pytest.fixture
def cloud_env(shared_plane: LocalControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point ``BENTO_CLOUD_API_ENDPOINT`` / ``_KEY`` at the module's control plane."""
    assert shared_plane.connection is not None
    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", shared_plane.connection.endpoint)
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", shared_plane.connection.token)
