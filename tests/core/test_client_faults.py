"""Retries and errors of the sync and async clients, against httpx.MockTransport (no server).

The fake answers as the control plane does (``{"error": "..."}`` bodies, deployments shaped as
the server renders them); faults are injected where a real network would produce them.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import httpx
import pytest

from bentoship import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    RetryPolicy,
    ServerUnavailableError,
)
from bentoship.connection import Connection, write_connection

from .transports import Answer, FakeServer, deployment_json, error

ENDPOINT = "http://control-plane.test"
TOKEN = "secret-token-0123456789abcdef"
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002)
DEPLOYMENTS = "/api/v2/deployments"


def client_with(answer: Answer) -> tuple[Client, FakeServer]:
    """A client with the FAST retry policy, talking to a fake server that answers ``answer``."""
    server = FakeServer(answer)
    return Client(ENDPOINT, TOKEN, retry=FAST, transport=server.transport()), server


def listing(*names: str) -> httpx.Response:
    items = [deployment_json(name) for name in names]
    return httpx.Response(
        200, json={"start": 0, "count": len(items), "total": len(items), "items": items}
    )


# retries of reads


def test_transient_5xx_and_resets_on_reads_are_retried() -> None:
    def flaky(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return error(503, "busy")
        if n == 2:
            raise httpx.ReadError("connection reset by peer", request=request)
        if n == 3:
            return httpx.Response(502, text="bad gateway")
        return listing("svc")

    client, server = client_with(flaky)
    assert [d.name for d in client.list_deployments()] == ["svc"]
    assert server.calls == [f"GET {DEPLOYMENTS}"] * 4


def test_persistent_504_ends_in_one_clear_one_line_error_after_exactly_attempts_calls() -> None:
    page = "<html>\n<body>\n504 Gateway Time-out\n</body>\n</html>\n"
    client, server = client_with(lambda r, n: httpx.Response(504, text=page))
    with pytest.raises(ServerUnavailableError) as caught:
        client.list_deployments()
    assert len(server.calls) == FAST.attempts == 4
    message = str(caught.value)
    assert "HTTP 504" in message and "504 Gateway Time-out" in message
    assert "\n" not in message and TOKEN not in message


def test_client_errors_are_answers_not_faults_and_are_not_retried() -> None:
    client, server = client_with(lambda r, n: error(404, "deployment 'ghost' not found"))
    assert client.find_deployment("ghost") is None
    with pytest.raises(NotFoundError):
        client.get_deployment("ghost")
    assert server.calls == [f"GET {DEPLOYMENTS}/ghost"] * 2


def test_a_retried_read_succeeds_with_the_servers_answer() -> None:
    def answer(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=deployment_json("svc", "echo:v2", "deploying"))

    client, server = client_with(answer)
    dep = client.get_deployment("svc")
    assert (dep.name, dep.bento, dep.status) == ("svc", "echo:v2", "deploying")
    assert len(server.calls) == 2


# writes: never blindly repeated


def test_create_is_not_blindly_repeated_on_5xx() -> None:
    client, server = client_with(lambda r, n: error(503, "busy"))
    with pytest.raises(ServerUnavailableError) as caught:
        client.create_deployment("never-made", "echo:v1", {})
    assert server.calls == [f"POST {DEPLOYMENTS}"]
    assert "HTTP 503" in str(caught.value)


def test_create_whose_answer_was_lost_looks_the_deployment_up_instead_of_creating_twice() -> None:
    created: dict[str, dict[str, object]] = {}

    def lose_the_answer(request: httpx.Request, n: int) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(request.content)
            created[body["name"]] = deployment_json(body["name"], body["bento"], "deploying")
            raise httpx.ReadTimeout("answer lost", request=request)
        name = request.url.path.rsplit("/", 1)[1]
        if name in created:
            return httpx.Response(200, json=created[name])
        return error(404, f"deployment {name!r} not found")

    client, server = client_with(lose_the_answer)
    dep = client.create_deployment("lossy", "echo:v1", {})
    assert (dep.name, dep.bento, dep.status) == ("lossy", "echo:v1", "deploying")
    assert server.calls == [f"POST {DEPLOYMENTS}", f"GET {DEPLOYMENTS}/lossy"]


def test_create_lost_before_it_reached_the_server_is_sent_again_after_looking() -> None:
    def drop_first_post(request: httpx.Request, n: int) -> httpx.Response:
        if request.method == "POST" and n == 1:
            raise httpx.ReadError("connection reset by peer", request=request)
        if request.method == "POST":
            return httpx.Response(200, json=deployment_json("late", "echo:v1", "deploying"))
        return error(404, "deployment 'late' not found")

    client, server = client_with(drop_first_post)
    dep = client.create_deployment("late", "echo:v1", {})
    assert dep.name == "late" and dep.bento == "echo:v1"
    assert server.calls == [
        f"POST {DEPLOYMENTS}",
        f"GET {DEPLOYMENTS}/late",
        f"POST {DEPLOYMENTS}",
    ]


def test_create_lost_while_the_name_runs_another_bento_is_reported_not_repeated() -> None:
    def other_bento(request: httpx.Request, n: int) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ReadTimeout("answer lost", request=request)
        return httpx.Response(200, json=deployment_json("taken", "other:v7"))

    client, server = client_with(other_bento)
    with pytest.raises(ServerUnavailableError):
        client.create_deployment("taken", "echo:v1", {})
    assert server.calls.count(f"POST {DEPLOYMENTS}") == 1


def test_connect_errors_are_retried_even_for_create_because_nothing_was_sent() -> None:
    def refuse_twice(request: httpx.Request, n: int) -> httpx.Response:
        if n <= 2:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=deployment_json("svc", "echo:v1", "deploying"))

    client, server = client_with(refuse_twice)
    assert client.create_deployment("svc", "echo:v1", {}).name == "svc"
    assert server.calls == [f"POST {DEPLOYMENTS}"] * 3


def test_429_is_retried_even_for_non_idempotent_calls() -> None:
    def rate_limited_once(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return error(429, "slow down")
        return httpx.Response(200, json=deployment_json("svc", "echo:v1", "deploying"))

    client, server = client_with(rate_limited_once)
    assert client.create_deployment("svc", "echo:v1", {}).status == "deploying"
    assert server.calls == [f"POST {DEPLOYMENTS}"] * 2

    client, server = client_with(lambda r, n: error(429, "slow down"))
    with pytest.raises(ServerUnavailableError, match="429"):
        client.create_deployment("svc", "echo:v1", {})
    assert len(server.calls) == FAST.attempts


def test_update_is_idempotent_and_retried_on_5xx() -> None:
    def busy_once(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return error(503, "busy")
        return httpx.Response(200, json=deployment_json("svc", "echo:v2", "deploying"))

    client, server = client_with(busy_once)
    assert client.update_deployment("svc", "echo:v2", {}).bento == "echo:v2"
    assert server.calls == [f"PUT {DEPLOYMENTS}/svc"] * 2


def test_rollback_is_retried_only_when_it_names_its_revision() -> None:
    def busy_once(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return error(503, "busy")
        return httpx.Response(200, json=deployment_json("svc", "echo:v1", revision="rev-1"))

    client, server = client_with(busy_once)
    assert client.rollback("svc", revision="r1").target_revision == "rev-1"
    assert server.calls == [f"POST {DEPLOYMENTS}/svc/rollback"] * 2
    assert json.loads(server.requests[0].content) == {"revision": "r1"}

    # "roll back to the previous one", repeated, could go back twice
    client, server = client_with(busy_once)
    with pytest.raises(ServerUnavailableError):
        client.rollback("svc")
    assert server.calls == [f"POST {DEPLOYMENTS}/svc/rollback"]


def test_connect_errors_are_retried_then_reported() -> None:
    def refuse(request: httpx.Request, n: int) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, server = client_with(refuse)
    with pytest.raises(ServerUnavailableError) as caught:
        client.get_deployment("x")
    assert len(server.calls) == FAST.attempts
    message = str(caught.value)
    assert "cannot reach" in message and "bentoship server" in message and ENDPOINT in message
    assert "\n" not in message


def test_a_real_refused_connection_is_reported_the_same_way(unused_port: int) -> None:
    client = Client(f"http://127.0.0.1:{unused_port}", TOKEN, retry=FAST)
    with pytest.raises(ServerUnavailableError) as caught:
        client.get_deployment("x")
    assert "cannot reach" in str(caught.value) and "bentoship server" in str(caught.value)


def test_retry_policy_makes_attempts_minus_one_bounded_pauses() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=2.0, rng=random.Random(3))
    delays = list(policy.delays())
    assert len(delays) == 5
    caps = [0.5, 1.0, 2.0, 2.0, 2.0]
    assert all(0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    assert list(RetryPolicy(attempts=1).delays()) == []


# the async client


def test_async_client_retries_too() -> None:
    def busy_twice(request: httpx.Request, n: int) -> httpx.Response:
        if n <= 2:
            return error(503, "busy")
        return error(404, "deployment 'nope' not found")

    server = FakeServer(busy_twice)

    async def run() -> None:
        async with AsyncClient(ENDPOINT, TOKEN, retry=FAST, transport=server.transport()) as c:
            with pytest.raises(NotFoundError, match="nope"):
                await c.get_deployment("nope")

    asyncio.run(run())
    assert server.calls == [f"GET {DEPLOYMENTS}/nope"] * 3


def test_async_client_reports_a_persistent_fault_after_exactly_attempts_calls() -> None:
    def reset(request: httpx.Request, n: int) -> httpx.Response:
        if n < 3:
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(504, text="gateway\ntimeout")

    server = FakeServer(reset)

    async def run() -> str:
        async with AsyncClient(ENDPOINT, TOKEN, retry=FAST, transport=server.transport()) as c:
            with pytest.raises(ServerUnavailableError) as caught:
                await c.list_revisions("svc")
        return str(caught.value)

    message = asyncio.run(run())
    assert len(server.calls) == FAST.attempts
    assert "HTTP 504" in message and "\n" not in message


# error mapping: one line, says what to do, never the token


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token_is_an_authentication_error_that_hides_the_token(status: int) -> None:
    client, server = client_with(lambda r, n: error(status, "wrong API token"))
    with pytest.raises(AuthenticationError) as caught:
        client.list_deployments()
    message = str(caught.value)
    assert "the token came from the token argument" in message and "wrong API token" in message
    assert TOKEN not in message and "\n" not in message
    assert len(server.calls) == 1
    assert server.requests[0].headers["X-YATAI-API-TOKEN"] == TOKEN
    assert TOKEN not in repr(client)


def test_a_rejected_token_names_the_file_or_variable_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BENTO_CLOUD_API_ENDPOINT", raising=False)
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)
    write_connection(tmp_path, Connection(ENDPOINT, "file-token-0123456789"))
    server = FakeServer(lambda r, n: error(401, "wrong API token"))
    from_file = Client.from_env(home=tmp_path, retry=FAST, transport=server.transport())
    with pytest.raises(AuthenticationError) as caught:
        from_file.list_deployments()
    assert f"the connection file {tmp_path / 'connection.json'}" in str(caught.value)
    assert "file-token-0123456789" not in str(caught.value)

    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "env-token-0123456789")
    from_env = Client.from_env(retry=FAST, transport=server.transport())
    with pytest.raises(AuthenticationError) as caught:
        from_env.list_deployments()
    assert str(caught.value).endswith("the token came from BENTO_CLOUD_API_KEY")


def test_404_is_not_found_and_names_the_deployment() -> None:
    client, _ = client_with(lambda r, n: error(404, "not found"))
    with pytest.raises(NotFoundError) as caught:
        client.get_deployment("ghost")
    assert "ghost" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(NotFoundError, match="ghost"):
        client.list_revisions("ghost")


def test_400_record_not_found_is_not_found_as_bentocloud_says_it() -> None:
    client, _ = client_with(lambda r, n: error(400, "record not found"))
    with pytest.raises(NotFoundError, match="ghost"):
        client.get_deployment("ghost")


def test_400_is_an_invalid_request_carrying_the_servers_field_message() -> None:
    problem = (
        "invalid deployment config: services.Echo.instance_type: unknown instance type "
        "'gpu.huge';\n choose one of cpu.small, cpu.medium, cpu.large"
    )
    client, server = client_with(lambda r, n: error(400, problem))
    spec = {"services": {"Echo": {"instance_type": "gpu.huge"}}}
    with pytest.raises(InvalidRequestError) as caught:
        client.create_deployment("bad-spec", "echo:v1", spec)
    message = str(caught.value)
    assert "services.Echo.instance_type" in message and "gpu.huge" in message
    assert "\n" not in message
    assert server.calls == [f"POST {DEPLOYMENTS}"]
    sent = json.loads(server.requests[0].content)
    assert sent == {"name": "bad-spec", "bento": "echo:v1", **spec}


def test_an_error_without_a_json_body_still_gives_one_line() -> None:
    client, _ = client_with(lambda r, n: httpx.Response(422, text="line one\nline two\n"))
    with pytest.raises(InvalidRequestError) as caught:
        client.list_deployments()
    assert str(caught.value) == "line one line two"


# connection settings


def test_from_env_prefers_variables_then_connection_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_connection(tmp_path, Connection("http://127.0.0.1:4321", "file-token-0123456789"))
    monkeypatch.setenv("BENTOSHIP_HOME", str(tmp_path))
    from_file = Client.from_env()
    assert from_file.endpoint == "http://127.0.0.1:4321"
    assert from_file.connection.token == "file-token-0123456789"
    assert Client.from_env(home=tmp_path).endpoint == "http://127.0.0.1:4321"

    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "k" * 20)
    from_env = Client.from_env()
    assert from_env.endpoint == "http://127.0.0.1:9"
    assert from_env.connection.token == "k" * 20

    monkeypatch.delenv("BENTO_CLOUD_API_KEY")
    with pytest.raises(ConfigError, match="BENTO_CLOUD_API_KEY"):
        Client.from_env()
    monkeypatch.delenv("BENTO_CLOUD_API_ENDPOINT")
    monkeypatch.setenv("BENTOSHIP_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="bentoship server"):
        Client.from_env()
