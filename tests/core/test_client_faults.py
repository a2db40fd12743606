"""Retries and errors, with faults injected in front of a real control plane.

A wrapping transport forwards to the real server and injects only what cannot be produced for
real: 5xx answers, connection resets and lost responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from bentoship import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    ServerUnavailableError,
)
from bentoship._http import RetryPolicy
from bentoship.server import LocalControlPlane
from bentoship.steps import push

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02)

Fault = Callable[[httpx.Request, int], httpx.Response | None]


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


def client_with(plane: LocalControlPlane, fault: Fault) -> tuple[Client, FaultyTransport]:
    assert plane.connection is not None
    transport = FaultyTransport(fault)
    client = Client(
        plane.connection.endpoint, plane.connection.token, retry=FAST, transport=transport
    )
    return client, transport


def test_transient_5xx_and_resets_on_reads_are_retried(shared_plane: LocalControlPlane) -> None:
    def flaky(request: httpx.Request, n: int) -> httpx.Response | None:
        if n == 1:
            return httpx.Response(503, json={"error": "busy"})
        if n == 2:
            raise httpx.ReadError("connection reset by peer", request=request)
        if n == 3:
            return httpx.Response(502)
        return None

    client, transport = client_with(shared_plane, flaky)
    assert client.list_deployments() is not None
    assert len(transport.calls) == 4


def test_persistent_fault_ends_in_one_clear_error(shared_plane: LocalControlPlane) -> None:
    client, transport = client_with(shared_plane, lambda r, n: httpx.Response(504, text="gateway"))
    with pytest.raises(ServerUnavailableError) as caught:
        client.list_deployments()
    assert len(transport.calls) == FAST.attempts
    message = str(caught.value)
    assert "HTTP 504" in message and "\n" not in message


def test_create_is_not_blindly_repeated_on_5xx(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    client, transport = client_with(shared_plane, lambda r, n: httpx.Response(503, text="busy"))
    with pytest.raises(ServerUnavailableError):
        client.create_deployment("never-made", echo_v1, {})
    assert transport.calls == ["POST /api/v2/deployments"]


def test_connect_errors_are_retried_then_reported(unused_port: int) -> None:
    client = Client(f"http://127.0.0.1:{unused_port}", "tok-123456789", retry=FAST)
    with pytest.raises(ServerUnavailableError) as caught:
        client.get_deployment("x")
    assert "cannot reach" in str(caught.value) and "bentoship server" in str(caught.value)


def test_async_client_retries_too(shared_plane: LocalControlPlane) -> None:
    assert shared_plane.connection is not None
    real = httpx.AsyncHTTPTransport()
    calls: list[int] = []

    class Flaky(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(1)
            if len(calls) < 3:
                return httpx.Response(503)
            return await real.handle_async_request(request)

    async def run() -> None:
        async with AsyncClient(
            shared_plane.connection.endpoint,  # type: ignore[union-attr]
            shared_plane.connection.token,  # type: ignore[union-attr]
            retry=FAST,
            transport=Flaky(),
        ) as client:
            with pytest.raises(NotFoundError):
                await client.get_deployment("nope")

    asyncio.run(run())
    assert len(calls) == 3


def test_errors_are_one_line_and_say_what_to_do(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    assert shared_plane.connection is not None
    token = "wrong-token-0123456789"
    bad = Client(shared_plane.connection.endpoint, token)
    with pytest.raises(AuthenticationError) as caught:
        bad.list_deployments()
    assert token not in str(caught.value) and "BENTO_CLOUD_API_KEY" in str(caught.value)
    good = Client(shared_plane.connection.endpoint, shared_plane.connection.token)
    with pytest.raises(NotFoundError) as missing:
        good.get_deployment("ghost")
    assert "ghost" in str(missing.value) and "\n" not in str(missing.value)
    push(echo_v1, client=good)
    bad_spec = {"services": {"Echo": {"instance_type": "gpu.huge"}}}
    with pytest.raises(InvalidRequestError) as invalid:
        good.create_deployment("bad-spec", echo_v1, bad_spec)
    assert "services.Echo.instance_type" in str(invalid.value)
    assert "\n" not in str(invalid.value)
    assert good.find_deployment("bad-spec") is None
    with pytest.raises(InvalidRequestError, match="not a bento tag"):
        push("no tag here", client=good)
    assert shared_plane.connection.token not in repr(good)


def test_from_env_prefers_variables_then_connection_file(
    shared_plane: LocalControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shared_plane.connection is not None
    monkeypatch.setenv("BENTOSHIP_HOME", str(shared_plane.data_dir))
    assert Client.from_env().endpoint == shared_plane.connection.endpoint
    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "k" * 20)
    assert Client.from_env().endpoint == "http://127.0.0.1:9"
    monkeypatch.delenv("BENTO_CLOUD_API_KEY")
    with pytest.raises(ConfigError, match="BENTO_CLOUD_API_KEY"):
        Client.from_env()
    monkeypatch.delenv("BENTO_CLOUD_API_ENDPOINT")
    monkeypatch.setenv("BENTOSHIP_HOME", str(shared_plane.data_dir / "nowhere"))
    with pytest.raises(ConfigError, match="bentoship server"):
        Client.from_env()
