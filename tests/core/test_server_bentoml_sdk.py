"""Unmodified bentoml's own SDK against the local control plane: its compatibility test."""

from __future__ import annotations

import bentoml
import httpx
import pytest

from bentoship.server import LocalControlPlane


def cloud_client(plane: LocalControlPlane) -> bentoml.cloud.BentoCloudClient:
    assert plane.connection is not None
    return bentoml.cloud.BentoCloudClient(
        api_key=plane.connection.token, endpoint=plane.connection.endpoint
    )


def test_push_deploy_update_list_terminate_delete(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    bentoml.bentos.push(echo_v2, _cloud_client=client)
    remote = client.bento.get(*echo_v1.split(":"))
    assert remote.upload_status == "success"

    dep = bentoml.deployment.create(bento=echo_v1, name="sdk-echo", _cloud_client=client)
    assert dep.wait_until_ready(timeout=60, check_interval=1) == 0
    url = dep.get_endpoint_urls()[0]
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json() == {"text": "hi", "version": "v1"}

    updated = bentoml.deployment.update(name="sdk-echo", bento=echo_v2, _cloud_client=client)
    assert updated.get_bento() == echo_v2
    assert updated.wait_until_ready(timeout=60, check_interval=1) == 0
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json()["version"] == "v2"
    assert updated.get_endpoint_urls() == [url]

    names = [d.name for d in bentoml.deployment.list(_cloud_client=client)]
    assert "sdk-echo" in names

    bentoml.deployment.terminate(name="sdk-echo", _cloud_client=client)
    assert bentoml.deployment.get(name="sdk-echo", _cloud_client=client).get_status().status == (
        "terminated"
    )
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{url}/echo", json={"text": "hi"}, timeout=5).raise_for_status()

    bentoml.deployment.delete(name="sdk-echo", _cloud_client=client)
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.deployment.get(name="sdk-echo", _cloud_client=client)


def test_second_push_is_skipped_and_instance_types_listed(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    first = client.bento.get(*echo_v1.split(":"))
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    assert client.bento.get(*echo_v1.split(":")).updated_at == first.updated_at
    types = [t.name for t in client.deployment.list_instance_types()]
    assert "cpu.small" in types


def test_pull_returns_the_pushed_bento(
    shared_plane: LocalControlPlane, echo_v1: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    bentoml.bentos.delete(echo_v1)
    try:
        bentoml.bentos.pull(echo_v1, _cloud_client=client)
        assert str(bentoml.bentos.get(echo_v1).tag) == echo_v1
    finally:
        bentoml.bentos.get(echo_v1)
