"""Candidates, canary routing and canary analysis, against real ``bentoml serve`` processes.

The module's deployment serves echo v1 as r1; each test verifies a candidate of echo v2
while clients call the stable endpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bentoship import CanaryFailed, CanaryPolicy, Client, InvalidRequestError, NotFoundError
from bentoship.cli import main
from bentoship.server import LocalControlPlane
from bentoship.steps import analyze_canary, deploy, push, wait_until_ready

from ..traffic import REVISION_HEADER, TrafficLoop

NAME = "canary-svc"
POLICY = CanaryPolicy(
    steps=(10, 50, 100), interval=1.0, min_requests=100, p99_slack_ms=250, step_timeout=60
)
"""The default gates, but 1 s steps (each waits up to 60 s for its 100 requests); p99 gets
250 ms of slack on the busy 2-core CI machine."""


@pytest.fixture(scope="module")
def client(shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str) -> Iterator[Client]:
    assert shared_plane.connection is not None
    with Client(shared_plane.connection.endpoint, shared_plane.connection.token) as client:
        push(echo_v1, client=client)
        push(echo_v2, client=client)
        wait_until_ready(deploy(NAME, echo_v1, client=client), client=client, timeout=120)
        yield client


def candidate(client: Client, bento: str, **envs: str) -> Any:
    rollout = deploy(NAME, bento, {"envs": envs}, candidate=True, client=client)
    assert rollout.candidate and rollout.candidate_url != rollout.endpoint_url
    wait_until_ready(rollout, client=client, timeout=120)
    return rollout


def echo(url: str, **headers: str) -> httpx.Response:
    response = httpx.post(f"{url}/echo", json={"text": "x"}, headers=headers, timeout=10)
    assert response.status_code == 200
    return response


def test_canary_split_sticky_routing_then_analysis_promotes(client: Client, echo_v2: str) -> None:
    rollout = candidate(client, echo_v2, RUN="healthy")
    baseline = client.get_deployment(NAME).serving_revision
    new = rollout.revision
    assert baseline != new and client.get_deployment(NAME).candidate_revision == new
    assert echo(rollout.candidate_url).headers[REVISION_HEADER] == new
    assert echo(rollout.candidate_url).json()["version"] == "v2"
    assert echo(rollout.endpoint_url).headers[REVISION_HEADER] == baseline
    with pytest.raises(InvalidRequestError, match="is not the candidate of canary-svc"):
        client.promote(NAME, baseline)

    client.set_canary(NAME, 10)
    with httpx.Client(timeout=10) as http:
        answers = [
            http.post(f"{rollout.endpoint_url}/echo", json={"text": "x"}).headers[REVISION_HEADER]
            for _ in range(1000)
        ]
    share = Counter(answers)[new] / len(answers)
    # 10% of 1,000 has a standard deviation of 0.95 points: +-5 points is over 5 sigma, which a
    # fair split misses about once in ten million runs (+-3 failed once in a full run, at 13.2%).
    assert 0.05 <= share <= 0.15, share

    client.set_canary(NAME, 30, "header", "X-User")
    users = [f"user-{i}" for i in range(60)]
    first = {u: echo(rollout.endpoint_url, **{"X-User": u}).headers[REVISION_HEADER] for u in users}
    again = {u: echo(rollout.endpoint_url, **{"X-User": u}).headers[REVISION_HEADER] for u in users}
    assert first == again and set(first.values()) == {baseline, new}
    assert echo(rollout.endpoint_url).headers[REVISION_HEADER] == baseline

    with TrafficLoop(f"{rollout.endpoint_url}/echo", pause=0.01) as live:
        analysis = analyze_canary(rollout, POLICY, client=client)
    assert analysis.promoted and [s.weight for s in analysis.steps] == [10, 50, 100]
    assert all(s.candidate.requests >= 100 and s.candidate.errors == 0 for s in analysis.steps)
    assert analysis.to_dict()["steps"][0]["candidate"]["success_rate"] == 1.0
    dep = client.get_deployment(NAME)
    assert (dep.serving_revision, dep.candidate_revision, dep.canary) == (new, None, None)
    assert echo(dep.url).headers[REVISION_HEADER] == new
    assert {a.status for a in live.answers} == {200}


class WithoutPlans(Client):
    """A client of the same plane that sees no ``analysis`` extension, as against an older
    bentoship: the step runs the analysis itself."""

    def get_extensions(self) -> frozenset[str]:
        return super().get_extensions() - {"analysis"}


def test_analysis_discards_a_candidate_that_fails_five_percent(
    client: Client, echo_v1: str, caplog: pytest.LogCaptureFixture
) -> None:
    serving = client.get_deployment(NAME).serving_revision
    rollout = candidate(client, echo_v1, ECHO_FAIL_EVERY="20")
    with pytest.raises(InvalidRequestError, match="not a ready candidate"):
        analyze_canary(promote_target(rollout), POLICY, client=client)

    older = WithoutPlans(client.endpoint, client.connection.token)
    steps_log = caplog.at_level(logging.INFO, logger="bentoship.steps")
    with TrafficLoop(f"{rollout.endpoint_url}/echo", pause=0.01) as live, older, steps_log:
        with pytest.raises(CanaryFailed, match=r"success rate 9\d\.\d\d%") as caught:
            analyze_canary(rollout, POLICY, client=older)
        seen = len(live.answers)
        live.wait_for(seen + 50)
    assert "runs no analysis plans; this step runs the canary analysis" in caplog.text
    with contextlib.suppress(NotFoundError):  # the step judged it: the plane ran no plan on it
        assert client.analysis(NAME)["revision"] != rollout.revision
    analysis = caught.value.analysis
    assert analysis["verdict"] == "rolled_back" and len(analysis["steps"]) == 1
    step = analysis["steps"][0]
    assert step["weight"] == 10 and step["candidate"]["requests"] >= 100
    assert 0.9 < step["candidate"]["success_rate"] < 0.99

    dep = client.get_deployment(NAME)
    assert (dep.serving_revision, dep.target_revision, dep.candidate_revision) == (
        serving,
        serving,
        None,
    )
    # Each client may have had one request in flight to the candidate when it was discarded.
    after = live.answers[seen + live.clients :]
    assert {a.revision for a in after} == {serving} and {a.status for a in after} == {200}
    failed = next(r for r in client.list_revisions(NAME) if r.name == rollout.revision)
    assert failed.phase == "cancelled" and failed.errors >= 5


def promote_target(rollout: Any) -> Any:
    """The same rollout record, as if it had not been deployed as a candidate."""
    return {**rollout.to_dict(), "candidate": False}


def test_promote_discard_and_canary_say_what_is_wrong(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    dep = client.get_deployment(NAME)
    assert dep.target_phase == "serving" and dep.candidate_revision is None
    assert client.promote(NAME).serving_revision == dep.serving_revision
    assert client.discard(NAME).serving_revision == dep.serving_revision
    with pytest.raises(NotFoundError, match="r99"):
        client.promote(NAME, "r99")
    with pytest.raises(InvalidRequestError, match="has no ready candidate"):
        client.set_canary(NAME, 10)
    with pytest.raises(
        InvalidRequestError, match="weight: Input should be less than or equal to 100"
    ):
        client.set_canary(NAME, 101)
    with pytest.raises(InvalidRequestError, match="route_type header needs route_by"):
        client.set_canary(NAME, 10, "header")
    with pytest.raises(NotFoundError):
        client.promote("no-such-deployment")
    connection = ["--endpoint", client.endpoint, "--token", client.connection.token]
    assert main(["canary", NAME, "10", *connection]) == 2
    error = capsys.readouterr().err
    assert "has no ready candidate" in error and error.count("\n") == 1
    assert main(["discard", NAME, *connection]) == 0
    assert json.loads(capsys.readouterr().out)["candidate_revision"] is None
    assert client.get_deployment(NAME).serving_revision == dep.serving_revision
