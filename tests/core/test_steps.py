"""The pipeline steps end to end against a real control plane and real ``bentoml serve``.

One deployment serves the module's tests (``CHAIN``; a failing rollout's ``DeploymentFailed``
is tested on the crash of tests/core/test_server_rollouts.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bentoship import Client, RetryPolicy, Rollout, SmokeTestFailed
from bentoship.server import LocalControlPlane
from bentoship.steps import SmokeTest, deploy, push, rollback, ship, smoke_test, wait_until_ready

from ..traffic import TrafficLoop
from .transports import FaultyTransport


def client_for(plane: LocalControlPlane, **kwargs: Any) -> Client:
    assert plane.connection is not None
    return Client(plane.connection.endpoint, plane.connection.token, **kwargs)


def echo_check(version: str) -> SmokeTest:
    return SmokeTest(
        api="echo", payload={"text": "ok"}, expected={"text": "ok", "version": version}
    )


@pytest.fixture(scope="module")
def chain() -> dict[str, Rollout]:
    """The rollouts of ``CHAIN``, the module's one deployment, which its tests build on in file
    order: created (v1) and updated (v2) with lost answers, deployed again unchanged while v2
    starts, rolled back by name, then shipped a candidate that fails its smoke test."""
    return {}


CHAIN = "chain"
CHAIN_CONFIG = {"envs": {"MODE": "a"}, "min_replicas": 1, "access_authorization": True}


def test_retried_deploy_after_lost_response_does_not_duplicate(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str, chain: dict[str, Rollout]
) -> None:
    seen: dict[str, int] = {}

    def lose_first_write(request: httpx.Request, n: int) -> httpx.Response | None:
        key = f"{request.method} {request.url.path}"
        if request.method in ("POST", "PUT") and "/api/v2/deployments" in key:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 1:
                transport.real.handle_request(request).read()
                raise httpx.ReadTimeout("answer lost", request=request)
        return None

    transport = FaultyTransport(lose_first_write)
    client = client_for(
        shared_plane, transport=transport, retry=RetryPolicy(attempts=3, base_delay=0.01)
    )
    push(echo_v1, client=client)
    push(echo_v2, client=client)
    created = deploy(CHAIN, echo_v1, CHAIN_CONFIG, client=client)
    assert created.created and created.revision is not None
    assert transport.calls.count("POST /api/v2/deployments") == 1
    wait_until_ready(created, client=client, timeout=60)
    updated = deploy(CHAIN, echo_v2, CHAIN_CONFIG, client=client)
    assert transport.calls.count(f"PUT /api/v2/deployments/{CHAIN}") == 2
    assert updated.changed and updated.previous_revision == created.revision
    assert [r.bento for r in client.list_revisions(CHAIN)] == [echo_v2, echo_v1]
    chain.update(created=created, updated=updated)


def test_deploy_twice_makes_one_revision_and_wait_long_polls(
    shared_plane: LocalControlPlane, echo_v2: str, chain: dict[str, Rollout]
) -> None:
    """Deploying what the previous test's update just deployed (v2, still starting) again."""
    transport = FaultyTransport(lambda request, n: None)  # forwards all, records the calls
    client = client_for(shared_plane, transport=transport)
    first = chain["updated"]
    again = deploy(CHAIN, echo_v2, CHAIN_CONFIG, client=client)
    assert first.changed and not again.changed
    assert again.revision == first.revision

    assert client.get_deployment(CHAIN).status == "deploying"
    before = len(transport.calls)
    # A sleep of poll_interval (an hour) between polls could never end within the timeout.
    dep = wait_until_ready(again, client=client, poll_interval=3600, timeout=90)
    assert dep.status == "running" and dep.serving_revision == first.revision
    during = transport.calls[before:]
    waits = [c for c in during if c == f"GET /api/v2/deployments/{CHAIN}/wait"]
    gets = [c for c in during if c == f"GET /api/v2/deployments/{CHAIN}"]
    # one long-poll per status change (deploying -> running), not a poll loop
    assert 1 <= len(waits) <= 3, during
    assert len(gets) <= 2, during

    assert not deploy(CHAIN, echo_v2, CHAIN_CONFIG, client=client).changed
    assert [r.name for r in client.list_revisions(CHAIN)] == ["r2", "r1"]
    assert Rollout.from_json(first.to_json()) == first
    assert Rollout.from_json(chain["created"].to_json()) == chain["created"]


def test_rollback_to_named_revision_and_smoke_test_with_token(
    shared_plane: LocalControlPlane, chain: dict[str, Rollout]
) -> None:
    """On the chain's deployment (access_authorization): r1 serves v1, r2 serves v2."""
    client = client_for(shared_plane)
    first, second = chain["created"], chain["updated"]
    token = client.connection.token
    assert smoke_test(second, echo_check("v2"), token=token)["version"] == "v2"
    with pytest.raises(SmokeTestFailed, match="HTTP 401"):
        smoke_test(second, echo_check("v2"))
    with pytest.raises(SmokeTestFailed, match="HTTP 401"):
        smoke_test(second, echo_check("v2"), token="not-the-token")
    # No side door: the revision's own port, which the revisions API lists, takes only the
    # control plane's client certificate (mutual TLS), so a local client cannot skip the token.
    port = next(r.port for r in client.list_revisions(CHAIN) if r.serving)
    assert port is not None
    for scheme in ("http", "https"):
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"{scheme}://127.0.0.1:{port}/echo", json={"text": "x"}, verify=False)
    # The service never sees the control plane's API token, nor its session cookie.
    seen = httpx.post(
        f"{second.endpoint_url}/headers",
        json={},
        headers={"Authorization": f"Bearer {token}", "Cookie": "bentoship_session=s; theirs=1"},
    ).json()
    assert "authorization" not in seen and seen["cookie"] == "theirs=1"
    assert token not in str(seen)
    dep = rollback(CHAIN, revision="r1", client=client)
    assert dep is not None and dep.serving_revision == first.revision
    assert smoke_test(CHAIN, echo_check("v1"), token=token, client=client)["version"] == "v1"


def test_a_ship_that_fails_its_smoke_test_never_reaches_live_traffic(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str, chain: dict[str, Rollout]
) -> None:
    """On the chain's deployment, r1 (v1) serving again: clients call the endpoint all along;
    the bad revision is smoke-tested as a candidate.

    Against plain BentoCloud (no candidates) the same path rolls back: tests/kfp/. A ship that
    creates its deployment: tests/drills/.
    """
    client = client_for(shared_plane)
    assert {"candidates", "canary", "traffic"} <= client.get_extensions()
    token = client.connection.token

    first = ship(CHAIN, echo_v1, CHAIN_CONFIG, smoke=echo_check("v1"), client=client, token=token)
    assert first.revision == "r1" and not first.changed and not first.candidate
    auth = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{first.endpoint_url}/echo", json={"text": "a"}, headers=auth)
    assert answer.json()["version"] == "v1"

    with TrafficLoop(f"{first.endpoint_url}/echo", clients=2, pause=0.05, headers=auth) as live:
        live.wait_for(20)
        with pytest.raises(SmokeTestFailed, match=r"answered"):
            ship(
                CHAIN,
                echo_v2,
                CHAIN_CONFIG,
                smoke=echo_check("v9"),
                client=client,
                poll_interval=0.5,
                token=token,
            )
        seen = len(live.answers)
        live.wait_for(seen + 20)
    assert live.by_revision() == {"r1": len(live.answers)}
    assert {a.body["version"] for a in live.answers} == {"v1"} and not live.failures
    assert {a.status for a in live.answers} == {200}

    dep = client.get_deployment(CHAIN)
    assert dep.status == "running" and dep.bento == echo_v1
    assert (dep.serving_revision, dep.target_revision, dep.candidate_revision) == ("r1", "r1", None)
    bad = client.list_revisions(CHAIN)[0]
    assert (bad.name, bad.phase, bad.bento, bad.requests) == ("r3", "cancelled", echo_v2, 1)
    assert "discarded" in bad.reason
