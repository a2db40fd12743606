"""Reliability drills: crashes, concurrent pipelines and a faulty network, on real processes."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import SmokeTest, deploy, push, ship, wait_until_ready

from ..traffic import TrafficLoop
from .faultproxy import FaultProxy

ECHO_V1 = SmokeTest(api="echo", payload={"text": "x"}, expected={"text": "x", "version": "v1"})


def client_for(plane: LocalControlPlane, **kwargs: Any) -> Client:
    assert plane.connection is not None
    return Client(plane.connection.endpoint, plane.connection.token, **kwargs)


@pytest.fixture(scope="module")
def shared_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """A plane of this module's own, not the worker's: the last drill kills it. The worker
    plane's settings, but a 120 s readiness deadline for what starts again after the kill."""
    with LocalControlPlane(
        tmp_path_factory.mktemp("drills-plane"),
        readiness_timeout=120,
        rollback_window=60,
        trace_sample=0.0,
    ) as plane:
        yield plane


@dataclass
class Crowd:
    """Five pipelines shipped at once: four straight to the plane, the fifth ("unreliable")
    through a proxy that drops or delays 30% of its connections."""

    names: list[str]
    errors: list[BaseException] = field(default_factory=list)
    proxy: FaultProxy | None = None
    rollouts: dict[str, Any] = field(default_factory=dict)
    """What each pipeline's ship returned, by deployment name."""

    @property
    def unreliable(self) -> Any:
        """The fifth pipeline's rollout."""
        return self.rollouts.get("unreliable")


@pytest.fixture(scope="module")
def crowd(shared_plane: LocalControlPlane, echo_v1: str) -> Iterator[Crowd]:
    """The five pipelines of the drills below, run once: the network drill is one of the five,
    the killed-process drill uses one of their deployments and the killed-plane drill two."""
    assert shared_plane.connection is not None
    push(echo_v1, client=client_for(shared_plane))
    crowd = Crowd([f"crowd-{i}" for i in range(4)] + ["unreliable"])
    proxy = crowd.proxy = FaultProxy(shared_plane.port, fault_rate=0.3).start()
    fresh_connections = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    unreliable = Client(
        f"http://127.0.0.1:{proxy.port}",
        shared_plane.connection.token,
        transport=fresh_connections,
    )

    def pipeline(name: str) -> None:
        try:
            with unreliable if name == "unreliable" else client_for(shared_plane) as client:
                crowd.rollouts[name] = ship(
                    name, echo_v1, smoke=ECHO_V1, client=client, timeout=300
                )
        except BaseException as exc:
            crowd.errors.append(exc)

    threads = [threading.Thread(target=pipeline, args=(name,)) for name in crowd.names]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(400)
    finally:
        proxy.stop()
    yield crowd


def test_five_pipelines_at_once_all_go_green(shared_plane: LocalControlPlane, crowd: Crowd) -> None:
    """Each ship created its deployment: its first revision, promoted, serving v1."""
    assert crowd.errors == []
    with client_for(shared_plane) as client:
        deployments = [client.get_deployment(name) for name in crowd.names]
    assert len(crowd.names) == 5 and {dep.status for dep in deployments} == {"running"}
    for dep in deployments:
        rollout = crowd.rollouts[dep.name]
        assert (rollout.revision, rollout.candidate) == ("r1", False), rollout
        assert dep.serving_revision == "r1" and dep.bento == rollout.bento
        if dep.name != "unreliable":
            assert rollout.created, rollout
        answer = httpx.post(f"{rollout.endpoint_url}/echo", json={"text": "x"}, timeout=30)
        assert answer.json() == {"text": "x", "version": "v1"}


def test_ship_through_a_network_that_drops_or_delays_30_percent(
    shared_plane: LocalControlPlane, crowd: Crowd
) -> None:
    assert crowd.errors == [] and crowd.unreliable is not None and crowd.proxy is not None
    assert crowd.proxy.counts["dropped before forwarding"] > 0
    assert crowd.proxy.counts["response lost"] > 0
    with client_for(shared_plane) as direct:
        assert len(direct.list_revisions("unreliable")) == 1
        assert direct.get_deployment("unreliable").serving_revision == crowd.unreliable.revision


def test_killed_serving_process_is_restarted(shared_plane: LocalControlPlane, crowd: Crowd) -> None:
    """On one of the crowd's deployments, shipped and serving."""
    phoenix = crowd.names[0]
    client = client_for(shared_plane)
    assert client.get_deployment(phoenix).status == "running"
    serving = next(r for r in client.list_revisions(phoenix) if r.serving)
    assert serving.pid is not None

    tree = psutil.Process(serving.pid).children(recursive=True)
    for pid in [serving.pid, *(child.pid for child in tree)]:
        os.kill(pid, signal.SIGKILL)
    seen = client.wait_for_change(phoenix, "running", timeout=30)
    assert seen.status == "unhealthy"
    back = seen
    for _ in range(20):
        if back.status == "running":
            break
        back = client.wait_for_change(phoenix, back.status, timeout=10)
    assert back.status == "running" and back.serving_revision == serving.name
    restarted = next(r for r in client.list_revisions(phoenix) if r.serving)
    assert restarted.pid not in (None, serving.pid)
    answer = httpx.post(f"{back.url}/echo", json={"text": "x"}).json()
    assert answer == {"text": "x", "version": "v1"}


def test_control_plane_killed_mid_canary_and_mid_rollout_recovers_and_the_canary_goes_on(
    shared_plane: LocalControlPlane, crowd: Crowd, echo_v2: str
) -> None:
    """On two of the crowd's deployments, each serving v1 as r1 (the others are deleted first):
    a canary of v2 on ``steady`` at its first step, and an update of ``midway`` to v2 still
    starting, when the plane is killed."""
    steady, midway = crowd.names[1], crowd.names[2]
    plane = shared_plane
    client = client_for(plane)
    for name in crowd.names:
        if name not in (steady, midway):
            client.delete_deployment(name)
    push(echo_v2, client=client)
    canary = deploy(steady, echo_v2, candidate=True, client=client)
    wait_until_ready(canary, client=client, timeout=90)
    steady_url = client.get_deployment(steady).url
    # p99 gets 250 ms of slack, as in the other canary tests: the 2-core machine is busy
    plan = {
        "steps": [50, 100],
        "interval": 1,
        "min_requests": 5,
        "step_timeout": 300,
        "p99_slack_ms": 250,
    }
    client.start_analysis(steady, plan)
    with TrafficLoop(f"{steady_url}/echo", clients=2, pause=0.01):
        first = client.analysis(steady, seen=0, timeout=60)
    assert [s["weight"] for s in first["steps"]] == [50] and first["state"] == "running"
    serving = crowd.rollouts[midway]
    second = deploy(midway, echo_v2, client=client)
    assert client.get_deployment(midway).status == "deploying"

    plane.kill()
    plane.start()
    client = client_for(plane)
    assert sorted(d.name for d in client.list_deployments()) == sorted([midway, steady])
    answer = httpx.post(f"{serving.endpoint_url}/echo", json={"text": "x"}, timeout=90)
    assert answer.status_code == 200 and answer.json()["version"] in ("v1", "v2")
    dep = wait_until_ready(second, client=client, timeout=120)
    assert dep.serving_revision == second.revision
    revisions = client.list_revisions(midway)
    assert [(r.name, r.bento) for r in revisions] == [("r2", echo_v2), ("r1", serving.bento)]
    assert httpx.post(f"{dep.url}/echo", json={"text": "x"}).json()["version"] == "v2"

    # the canary goes on from the step it reached, to its verdict
    wait_until_ready(steady, client=client, timeout=120)
    with TrafficLoop(f"{steady_url}/echo", clients=2, pause=0.01):
        verdict = client.analysis(steady)
        while verdict["state"] == "running":
            verdict = client.analysis(steady, seen=len(verdict["steps"]), timeout=30)
    assert verdict["state"] == "promoted", verdict
    assert [s["weight"] for s in verdict["steps"]] == [50, 100], "the 50% step ran once"
    promoted = client.get_deployment(steady)
    assert promoted.url == steady_url and promoted.serving_revision == canary.revision
    assert not promoted.canary and promoted.candidate_revision is None
    assert httpx.post(f"{steady_url}/echo", json={"text": "x"}).json()["version"] == "v2"
