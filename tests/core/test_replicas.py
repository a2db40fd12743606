"""Replicas of a revision on the real control plane: spread, a lost replica, a switch."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from bentoship.server import LocalControlPlane

from ..traffic import TrafficLoop
from .api import Api

REPLICAS = 3


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
    api.create("trio", echo_v1, services={"Echo": {"scaling": scaling}})
    api.wait_status("trio", {"running"})
    started = wait_replicas(api, "trio", REPLICAS)
    assert len({r["port"] for r in started}) == REPLICAS
    url = f"{api.url('trio')}/echo"

    with TrafficLoop(url, clients=4) as spread:
        spread.wait_for(3000)
    counts = [r["requests"] for r in replicas(api, "trio")]
    total = sum(counts)
    assert total >= 3000 and spread.failures == []
    assert all(abs(c - total / REPLICAS) <= 0.1 * total / REPLICAS for c in counts), counts

    victim = started[1]
    with TrafficLoop(url, payload={"text": "live", "delay": 0.02}, clients=4) as load:
        load.wait_for(100)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim["pid"], signal.SIGKILL)
        again = wait_replicas(api, "trio", REPLICAS, gone=victim["pid"])
        seen = len(load.answers)
        load.wait_for(seen + 100)
    assert len(load.failures) <= load.clients, load.failures
    assert victim["pid"] not in {r["pid"] for r in again}
    events = api.http.get("/api/v2/deployments/trio/events").json()["events"]
    kinds = [e["kind"] for e in events]
    assert "crashed" in kinds and "restarted" in kinds

    smaller = {"min_replicas": 2, "max_replicas": 2}
    with TrafficLoop(url, payload={"text": "live", "delay": 0.01}, clients=4) as switch:
        api.update("trio", echo_v2, services={"Echo": {"scaling": smaller}})
        api.wait_status("trio", {"running"})
        while switch.versions()["v2"] < 50:
            time.sleep(0.05)
    assert switch.failures == []
    assert switch.versions()["v1"] > 0
    assert len(replicas(api, "trio", "r2")) == 2


def test_replicas_grow_under_load_and_shrink_after_the_window_failing_none(
    shared_plane: LocalControlPlane, busy_bento: str
) -> None:
    """A service declaring a concurrency of 2, loaded by 6 clients: the revision grows to its
    maximum of 3 replicas; once the load eases, it shrinks back to 1 after the scale-down
    window (2 s), draining, while a client keeps calling: no request fails."""
    api = Api(shared_plane)
    api.push(busy_bento)
    policy = {"scale_up_stabilization_window": 0, "scale_down_stabilization_window": 2}
    scaling = {"min_replicas": 1, "max_replicas": 3, "policy": policy}
    api.create("busy", busy_bento, services={"Busy": {"scaling": scaling}})
    api.wait_status("busy", {"running"})
    wait_replicas(api, "busy", 1)
    url = f"{api.url('busy')}/work"
    with TrafficLoop(url, payload={"seconds": 0.3}, clients=6) as heavy:
        grown = wait_replicas(api, "busy", 3)
        heavy.wait_for(len(heavy.answers) + 30)
    with TrafficLoop(url, payload={"seconds": 0.05}, clients=1, pause=0.05) as light:
        shrunk = wait_replicas(api, "busy", 1)
        light.wait_for(len(light.answers) + 20)
    assert heavy.failures == [] and light.failures == []
    assert {a.status for a in heavy.answers + light.answers} == {200}
    assert len(grown) == 3 and len(shrunk) == 1
    events = api.http.get("/api/v2/deployments/busy/events").json()["events"]
    scaled = [e["message"] for e in events if e["kind"] == "scaled"]
    assert any("from 1 to" in m for m in scaled) and any("to 1 replica" in m for m in scaled), (
        scaled
    )
