"""httpx transports for client tests: a fault injector in front of a real server, and a fake one.

``FaultyTransport`` forwards to a real control plane and injects only what cannot be produced
for real (5xx answers, resets, lost responses). ``FakeServer`` is a MockTransport handler that
answers like the control plane does, for unit tests that start no process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

Fault = Callable[[httpx.Request, int], httpx.Response | None]
Answer = Callable[[httpx.Request, int], httpx.Response]


class FaultyTransport(httpx.BaseTransport):
    """Forward to the real server; ``fault(request, n)`` may answer or raise instead."""

    def __init__(self, fault: Fault) -> None:
        self.real = httpx.HTTPTransport()
        self.fault = fault
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        injected = self.fault(request, len(self.calls))
        return injected if injected is not None else self.real.handle_request(request)


class FakeServer:
    """A MockTransport handler: ``answer(request, n)`` answers the n-th request (or raises).

    Every request is recorded as ``"METHOD /path"`` in ``calls``, and in ``requests``.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[str] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        self.requests.append(request)
        return self.answer(request, len(self.calls))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def error(status: int, message: str) -> httpx.Response:
    """An error answer as the control plane gives it: ``{"error": "..."}``."""
    return httpx.Response(status, json={"error": message})


def deployment_json(
    name: str,
    bento: str = "echo:v1",
    status: str = "running",
    *,
    revision: str = "rev-1",
    serving: str | None = None,
    config: dict[str, Any] | None = None,
    reason: str = "",
    extensions: bool = True,
) -> dict[str, Any]:
    """A deployment as the server renders it (see bentoship.server.schemas.deployment)."""
    repository, version = bento.split(":")
    target = {
        "uid": f"{revision}-main",
        "name": "main",
        "resource_type": "deployment_target",
        "config": config or {},
        "bento": {"name": version, "version": version, "repository": {"name": repository}},
    }
    data: dict[str, Any] = {
        "uid": f"uid-{name}",
        "name": name,
        "resource_type": "deployment",
        "status": status,
        "kube_namespace": "bentoship",
        "cluster": {"name": "local"},
        "latest_revision": {
            "uid": f"uid-{revision}",
            "name": revision,
            "resource_type": "deployment_revision",
            "status": "active",
            "targets": [target],
        },
        "manifest": {"dev": False, "routing": None},
        "urls": [f"http://127.0.0.1:9/{name}"],
    }
    if extensions:
        data["bentoship"] = {
            "target_revision": revision,
            "serving_revision": serving if serving is not None else revision,
            "reason": reason,
        }
    return data
