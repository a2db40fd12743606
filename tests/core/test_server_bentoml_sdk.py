"""Unmodified bentoml's own SDK against the local control plane: its compatibility test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bentoml
import httpx
import pytest

from bentoship.server import LocalControlPlane


def cloud_client(plane: LocalControlPlane) -> bentoml.cloud.BentoCloudClient:
    assert plane.connection is not None
    return bentoml.cloud.BentoCloudClient(
        api_key=plane.connection.token, endpoint=plane.connection.endpoint
    )


def listed(plane: LocalControlPlane, *options: str) -> list[str]:
    """``bentoml deployment list`` (the unmodified CLI) against the plane: the names."""
    assert plane.connection is not None
    env = {
        **os.environ,
        "BENTO_CLOUD_API_ENDPOINT": plane.connection.endpoint,
        "BENTO_CLOUD_API_KEY": plane.connection.token,
    }
    command = [sys.executable, "-m", "bentoml", "deployment", "list", *options, "-o", "json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return sorted(item["name"] for item in json.loads(done.stdout))


def version_for(url: str, user: str) -> str:
    answer = httpx.post(f"{url}/echo", json={"text": "hi"}, headers={"X-User": user}).json()
    return str(answer["version"])


def test_push_deploy_update_canary_list_terminate_delete(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    bentoml.bentos.push(echo_v2, _cloud_client=client)
    remote = client.bento.get(*echo_v1.split(":"))
    assert remote.upload_status == "success"

    dep = bentoml.deployment.create(
        bento=echo_v1,
        name="sdk-echo",
        labels=[{"key": "team", "value": "x"}],
        _cloud_client=client,
    )
    assert dep.wait_until_ready(timeout=60, check_interval=1) == 0
    # The unmodified CLI's label filter: it sends q=label:team=x
    assert listed(shared_plane, "--label", "team=x") == ["sdk-echo"]
    assert listed(shared_plane, "--label", "team=y") == []
    url = dep.get_endpoint_urls()[0]
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json() == {"text": "hi", "version": "v1"}

    updated = bentoml.deployment.update(name="sdk-echo", bento=echo_v2, _cloud_client=client)
    assert updated.get_bento() == echo_v2
    assert updated.wait_until_ready(timeout=60, check_interval=1) == 0
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json()["version"] == "v2"
    assert updated.get_endpoint_urls() == [url]

    # BentoCloud's canary config: the version's bento starts as a candidate, and once ready it
    # takes its weight of the callers, sticky by the header's value.
    canary_config = {
        "route_type": "header",
        "route_by": "X-User",
        "versions": {"old": {"bento": echo_v1, "weight": 50}},
    }
    canary = bentoml.deployment.update(
        name="sdk-echo",
        bento=echo_v2,
        config_dict={"name": "sdk-echo", "canary": canary_config},
        _cloud_client=client,
    )
    assert canary.wait_until_ready(timeout=60, check_interval=1) == 0
    routing = canary.get_config().canary
    assert routing is not None and (routing.route_type, routing.route_by) == ("header", "X-User")
    users = [f"user-{i}" for i in range(40)]
    first = [version_for(url, user) for user in users]
    assert set(first) == {"v1", "v2"} and first == [version_for(url, user) for user in users]
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json()["version"] == "v2"

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


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_pull_returns_the_pushed_bento(
    shared_plane: LocalControlPlane, echo_v1: str, tmp_path: Path
) -> None:
    """Pull into a store of this test's own: the session's store, shared by every test, keeps
    its bento whatever happens here."""
    from bentoml._internal.bento import BentoStore

    client = cloud_client(shared_plane)
    bentoml.bentos.push(echo_v1, _cloud_client=client)
    private = BentoStore(tmp_path / "bentos")
    bentoml.bentos.pull(echo_v1, _bento_store=private, _cloud_client=client)

    pushed = bentoml.bentos.get(echo_v1)
    pulled = private.get(echo_v1)
    assert str(pulled.tag) == echo_v1
    assert Path(pulled.path) != Path(pushed.path)
    assert Path(pulled.path_of("bento.yaml")).read_text() == (
        Path(pushed.path_of("bento.yaml")).read_text()
    )
    assert files_of(Path(pulled.path_of("src"))) == files_of(Path(pushed.path_of("src")))
    assert "version.txt" in files_of(Path(pulled.path_of("src")))
