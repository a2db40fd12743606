"""Replicas of a revision on the real control plane: spread, a lost replica, a switch."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import httpx
import pytest
from bentoml._internal.cloud.schemas.schemasv2 import KubePodSchema
from bentoml._internal.cloud.schemas.utils import schema_from_object
from httpx_ws import WebSocketUpgradeError, connect_ws

from bentoship import DeploymentInfo, ReplicaCount
from bentoship.server import LocalControlPlane, schemas
from bentoship.server.rollout.replicas import ReplicaView
from bentoship.server.rollout.runner import marked_processes, marker_of
from bentoship.server.store import Revision

from ..traffic import TrafficLoop
from .api import Api

REPLICAS = 2
SPREAD = 3000
"""Requests spread over the replicas (least outstanding first, ties round-robin); each
replica's share is asserted within 10% of even."""


def replicas(api: Api, name: str, revision: str = "r1") -> list[dict[str, Any]]:
    found = [r for r in api.revisions(name) if r["name"] == revision]
    return list(found[0]["bentoship"]["replicas"]) if found else []


def wait_replicas(
    api: Api, name: str, count: int, gone: int | None = None, timeout: float = 90
) -> list[dict[str, Any]]:
    """The ready replicas, once there are ``count`` and none has the pid ``gone``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [r for r in replicas(api, name) if r["ready"] and not r["draining"]]
        if len(ready) == count and gone not in {r["pid"] for r in ready}:
            return ready
        time.sleep(0.2)
    raise AssertionError(f"{name} did not get {count} ready replicas: {replicas(api, name)}")


def test_replicas_share_requests_survive_a_kill_and_a_switch(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    api = Api(shared_plane)
    api.push(echo_v1)
    api.push(echo_v2)
    scaling = {"min_replicas": REPLICAS, "max_replicas": REPLICAS}
    api.create("pair", echo_v1, services={"Echo": {"scaling": scaling}})
    api.wait_status("pair", {"running"})
    started = wait_replicas(api, "pair", REPLICAS)
    assert len({r["port"] for r in started}) == REPLICAS
    assert api.get("pair")["bentoship"]["replicas"] == {
        "ready": REPLICAS,
        "desired": REPLICAS,
        "min": REPLICAS,
        "max": REPLICAS,
    }
    pods = api.cloud_client().client.v2.list_deployment_pods("pair")
    assert sorted(p.name for p in pods) == ["pair-r1-0", "pair-r1-1"]
    assert all(p.status.ready and p.pod_status.status == "Running" for p in pods)
    assert {p.labels["yatai.ai/bento-function-component-type"] for p in pods} == {"api-server"}
    url = f"{api.url('pair')}/echo"

    with TrafficLoop(url, clients=4) as spread:
        spread.wait_for(SPREAD)
    counts = [r["requests"] for r in replicas(api, "pair")]
    total = sum(counts)
    assert total >= SPREAD and spread.failures == []
    assert all(abs(c - total / REPLICAS) <= 0.1 * total / REPLICAS for c in counts), counts

    victim = started[1]
    marker = marker_of(victim["pid"])
    assert marker is not None
    assert len(marked_processes(marker)[marker]) > 1, "the workers carry the replica's marker"
    with TrafficLoop(url, payload={"text": "live", "delay": 0.02}, clients=4, pause=0.02) as load:
        load.wait_for(100)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim["pid"], signal.SIGKILL)
        again = wait_replicas(api, "pair", REPLICAS, gone=victim["pid"])
        seen = len(load.answers)
        load.wait_for(seen + 100)
    assert len(load.failures) <= load.clients, load.failures
    assert victim["pid"] not in {r["pid"] for r in again}
    deadline = time.monotonic() + 5
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes(marker) == {}, "a process of the killed replica outlived it"
    events = api.http.get("/api/v2/deployments/pair/events").json()["events"]
    kinds = [e["kind"] for e in events]
    assert "crashed" in kinds and "restarted" in kinds

    smaller = {"min_replicas": 1, "max_replicas": 1}
    with TrafficLoop(url, payload={"text": "live", "delay": 0.01}, clients=4, pause=0.02) as switch:
        api.update("pair", echo_v2, services={"Echo": {"scaling": smaller}})
        api.wait_status("pair", {"running"})
        while switch.versions()["v2"] < 50:
            time.sleep(0.05)
    assert switch.failures == []
    assert switch.versions()["v1"] > 0
    assert len(replicas(api, "pair", "r2")) == 1
    assert api.get("pair")["bentoship"]["replicas"] == {
        "ready": 1,
        "desired": 1,
        "min": 1,
        "max": 1,
    }
    listed = api.http.get("/api/v2/deployments/pair/pods").json()["items"]
    serving = [p for p in listed if p["labels"]["bentoship.io/role"] == "serving"]
    assert sorted(p["name"] for p in serving) == ["pair-r2-0"]
    assert {p["bentoship"]["pid"] for p in serving} == {
        r["pid"] for r in replicas(api, "pair", "r2")
    }


def test_pods_socket_refuses_a_wrong_token_and_names_an_unknown_deployment(
    shared_plane: LocalControlPlane,
) -> None:
    """The pods websocket refuses a wrong or missing token at the handshake (401 with the
    reason), and answers an unknown deployment with an error message naming it."""
    assert shared_plane.connection is not None
    endpoint = shared_plane.connection.endpoint.replace("http://", "ws://").rstrip("/")
    token = shared_plane.connection.token
    url = f"{endpoint}/ws/v2/deployments/ghost/pods"
    with (
        httpx.Client(headers={"X-YATAI-API-TOKEN": token}) as http,
        connect_ws(url, http) as ws,
    ):
        message = ws.receive_json()
    assert message["type"] == "error" and message["payload"] is None
    assert "deployment 'ghost' not found" in message["message"]
    for headers in ({"X-YATAI-API-TOKEN": token + "x"}, {}):
        with (
            httpx.Client(headers=headers) as http,
            pytest.raises(WebSocketUpgradeError) as refused,
            connect_ws(url, http),
        ):
            pass
        assert refused.value.response.status_code == 401
    handshake = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "X-YATAI-API-TOKEN": token + "x",
    }
    answer = httpx.get(url.replace("ws://", "http://"), headers=handshake)
    assert answer.status_code == 401 and "use a valid token" in answer.json()["error"]


def _replica(index: int, *, ready: bool, draining: bool = False) -> dict[str, Any]:
    return {
        "index": index,
        "port": 4000 + index,
        "pid": 100 + index,
        "ready": ready,
        "draining": draining,
        "outstanding": 2,
        "requests": 7,
    }


def test_a_replica_reads_as_a_bentocloud_pod_in_each_of_its_states() -> None:
    """Ready, starting and draining replicas parse as bentoml's KubePodSchema, each with the
    phase, readiness and pod status BentoCloud would show for it."""
    services = {"Echo": {"scaling": {"min_replicas": 2, "max_replicas": 4}}}
    rev = Revision("u1", "pair", 3, "echo:v1", {"services": services}, "", "serving")
    views = [
        ReplicaView(rev, "serving", _replica(0, ready=True), gpus=(1,)),
        ReplicaView(rev, "serving", _replica(1, ready=False)),
        ReplicaView(rev, "serving", _replica(2, ready=True, draining=True)),
    ]
    pods = [schema_from_object(schemas.pod("pair", v), KubePodSchema) for v in views]
    assert [p.name for p in pods] == ["pair-r3-0", "pair-r3-1", "pair-r3-2"]
    assert [(p.status.phase, p.status.ready, p.pod_status.status) for p in pods] == [
        ("Running", True, "Running"),
        ("Pending", False, "Pending"),
        ("Running", False, "Terminating"),
    ]
    assert {p.runner_name for p in pods} == {"Echo"}
    assert pods[0].labels["bentoship.io/revision"] == "r3"
    assert schemas.pod("pair", views[0])["bentoship"]["gpus"] == [1]


def test_replica_count_reads_from_the_deployment_json() -> None:
    data = {
        "name": "pair",
        "bentoship": {"replicas": {"ready": 2, "desired": 3, "min": 1, "max": 5}},
    }
    replicas = DeploymentInfo.from_api(data).replicas
    assert replicas == ReplicaCount(ready=2, desired=3, min=1, max=5)
    assert str(replicas) == "2/3 replicas ready (min 1, max 5)"
    assert DeploymentInfo.from_api({"name": "pair"}).replicas is None
