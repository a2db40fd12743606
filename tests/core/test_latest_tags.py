"""``name:latest`` as bentoml means it: the newest local version for a push, the newest uploaded
version on the server for a deploy and the registry route; what is recorded is the version."""

from __future__ import annotations

from collections.abc import Callable

import bentoml
import httpx
import pytest

from bentoship import Client
from bentoship.errors import NotFoundError
from bentoship.server import LocalControlPlane
from bentoship.steps import push


def newest_local(name: str) -> str:
    return str(max(bentoml.bentos.list(name), key=lambda b: b.info.creation_time).tag)


def test_latest_is_the_newest_local_version_for_push_and_the_newest_uploaded_on_the_server(
    start_control_plane: Callable[..., LocalControlPlane], echo_v1: str, echo_v2: str
) -> None:
    plane = start_control_plane()
    assert plane.connection is not None
    endpoint, token = plane.connection.endpoint, plane.connection.token
    headers = {"X-YATAI-API-TOKEN": token}
    with Client(endpoint, token) as client:
        with pytest.raises(NotFoundError, match="not on the server; push it first"):
            client.resolve_bento("echo:latest")

        pushed = push("echo:latest", client=client)
        assert pushed == newest_local("echo") and not pushed.endswith(":latest")
        assert client.bento_uploaded(pushed)

        # pushed last is newest on the server, whatever the local store's order
        older = echo_v2 if pushed == echo_v1 else echo_v1  # pushed now, so newest there
        push(older, client=client)
        route = f"{endpoint}/api/v1/bento_repositories/echo/bentos/latest"
        assert httpx.get(route, headers=headers).json()["version"] == older.partition(":")[2]
        assert client.resolve_bento("echo:latest") == (older, "Echo")

        # a version whose upload has not finished is not the latest
        pending = httpx.post(
            f"{endpoint}/api/v1/bento_repositories/echo/bentos",
            json={"version": "pending1", "manifest": {"service": "service:Echo"}},
            headers=headers,
        )
        assert pending.status_code == 200, pending.text
        assert httpx.get(route, headers=headers).json()["version"] == older.partition(":")[2]

        named_latest = httpx.post(
            f"{endpoint}/api/v1/bento_repositories/echo/bentos",
            json={"version": "latest", "manifest": {}},
            headers=headers,
        )
        assert named_latest.status_code == 400
        assert "give the bento its own version" in named_latest.json()["error"]


def test_push_of_latest_with_no_local_bento_says_build_it_first(
    start_control_plane: Callable[..., LocalControlPlane],
) -> None:
    plane = start_control_plane()
    assert plane.connection is not None
    missing = "no bento never-built in the local bento store"
    with (
        Client(plane.connection.endpoint, plane.connection.token) as client,
        pytest.raises(NotFoundError, match=missing),
    ):
        push("never-built:latest", client=client)
