"""A failed rollout brings the deployment's events with it, and puts them into the log."""

from __future__ import annotations

import logging

import httpx
import pytest

from bentoship import Client, DeploymentFailed
from bentoship.steps import wait_until_ready

from .transports import FakeServer, deployment_json, error

EVENTS = [
    {"id": 1, "time": "2026-11-30T01:00:00.000Z", "kind": "created", "revision": "r2"},
    {"id": 2, "time": "2026-11-30T01:00:01.000Z", "kind": "starting", "revision": "r2"},
    {"id": 3, "time": "2026-11-30T01:00:09.000Z", "kind": "failed", "revision": "r2"},
]
MESSAGES = ["r2 created: echo:v2", "r2 (echo:v2) is starting", "r2 failed: it crashed"]


def answer(request: httpx.Request, n: int) -> httpx.Response:
    path = request.url.path
    if path == "/api/v1/bentoship/info":
        return httpx.Response(200, json={"server": "bentoship", "extensions": ["logs", "events"]})
    if path == "/api/v2/deployments/svc":
        return httpx.Response(
            200, json=deployment_json("svc", "echo:v2", "failed", revision="r2", reason="crash")
        )
    if path == "/api/v2/deployments/svc/revisions/r2/logs":
        return httpx.Response(200, json={"lines": ["Traceback", "RuntimeError: boom"]})
    if path == "/api/v2/deployments/svc/events":
        events = [{**e, "message": m} for e, m in zip(EVENTS, MESSAGES, strict=True)]
        return httpx.Response(200, json={"deployment": "svc", "events": events})
    return error(404, "not found")


def test_a_failed_wait_raises_and_logs_the_deployments_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeServer(answer)
    client = Client("http://plane.test", "token-0123456789", transport=server.transport())
    with caplog.at_level(logging.ERROR, logger="bentoship"), pytest.raises(DeploymentFailed) as exc:
        wait_until_ready("svc", client=client, timeout=5)
    assert exc.value.events.splitlines() == [
        "2026-11-30T01:00:00.000Z created r2 r2 created: echo:v2",
        "2026-11-30T01:00:01.000Z starting r2 r2 (echo:v2) is starting",
        "2026-11-30T01:00:09.000Z failed r2 r2 failed: it crashed",
    ]
    logged = [r.getMessage() for r in caplog.records if "Latest events" in r.getMessage()]
    assert len(logged) == 1 and "r2 failed: it crashed" in logged[0]
    assert "RuntimeError: boom" in str(exc.value)


def test_without_the_events_extension_a_failure_has_no_events() -> None:
    def plain(request: httpx.Request, n: int) -> httpx.Response:
        if request.url.path == "/api/v1/bentoship/info":
            return httpx.Response(200, json={"server": "bentoship", "extensions": ["logs"]})
        return answer(request, n)

    server = FakeServer(plain)
    client = Client("http://plane.test", "token-0123456789", transport=server.transport())
    with pytest.raises(DeploymentFailed) as exc:
        wait_until_ready("svc", client=client, timeout=5)
    assert exc.value.events == ""
    assert "GET /api/v2/deployments/svc/events" not in server.calls
