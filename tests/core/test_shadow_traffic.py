"""Shadow traffic against real ``bentoml serve`` processes: a copy of live requests goes to the
held candidate, its answers are compared with the serving revision's, and the control plane
promotes or discards it; live callers only ever get the serving revision's answers.

The module's deployment serves echo v1; each candidate is the same bento with an environment
that changes its ``classify`` answers (``CLASSIFY_FLIP_PERCENT``) or its speed
(``CLASSIFY_SLEEP``).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import psutil
import pytest

from bentoship import Client, ShadowFailed, ShadowPolicy
from bentoship.cli import main
from bentoship.models import Rollout
from bentoship.server import LocalControlPlane
from bentoship.steps import analyze_shadow, deploy, smoke_test, wait_until_ready
from bentoship.steps.smoke import SmokeTest
from bentoship.testing import Deployer

from ..traffic import TrafficLoop

NAME = "shadow-svc"
POLICY = ShadowPolicy(min_pairs=200, timeout=120, apis=("classify",), p99_slack_ms=250)


@pytest.fixture(scope="module")
def plane(
    shared_plane: LocalControlPlane, echo_v1: str, module_bento_deployment: Deployer
) -> tuple[Client, str]:
    serving = module_bento_deployment(echo_v1, name=NAME)
    return serving.api, serving.plane.token


def candidate(client: Client, bento: str, **envs: str) -> Rollout:
    rollout = deploy(NAME, bento, {"envs": envs}, candidate=True, client=client)
    wait_until_ready(rollout, client=client, timeout=120)
    return rollout


def classify_traffic(url: str) -> TrafficLoop:
    return TrafficLoop(f"{url}/classify", clients=3, payloads=lambda n: {"x": n})


def put_shadow(client: Client, token: str, body: Any) -> httpx.Response:
    return httpx.put(
        f"{client.endpoint}/api/v2/deployments/{NAME}/shadow",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


def wait_for_pair(client: Client, since: float) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pairs = client.shadow_pairs(NAME, since=since)
        if pairs:
            return pairs[0]
        time.sleep(0.2)
    raise AssertionError("no pair within 30 s")


def test_bad_shadow_requests_get_one_400_naming_the_field_and_change_nothing(
    plane: tuple[Client, str],
) -> None:
    client, token = plane
    for body, field in [
        ({"percent": 101}, "percent"),
        ({"percent": -1}, "percent"),
        ({"percent": "50"}, "percent"),
        ({"percent": 50, "apis": "classify"}, "apis"),
        ({"percent": 50}, "percent"),  # no held candidate
        ([50], "body"),
    ]:
        answer = put_shadow(client, token, body)
        assert answer.status_code == 400, (body, answer.text)
        message = answer.json()["error"]
        assert field in message and "\n" not in message, (body, message)
    assert client.shadow(NAME) == {
        "deployment": NAME,
        "active": False,
        "percent": 0,
        "report": None,
    }


def test_a_disagreeing_candidate_is_caught_while_live_callers_get_only_serving_answers(
    plane: tuple[Client, str], echo_v1: str
) -> None:
    client, token = plane
    serving = client.get_deployment(NAME).serving_revision
    rollout = candidate(client, echo_v1, CLASSIFY_FLIP_PERCENT="30")
    smoke = SmokeTest(api="classify", payload={"x": 0}, check=lambda a: a["label"] == "even")
    smoke_test(rollout, smoke, client=client)

    unknown = put_shadow(client, token, {"percent": 100, "apis": ["predict"]})
    assert unknown.status_code == 400 and "apis" in unknown.json()["error"]
    assert "classify" in unknown.json()["error"]
    assert client.shadow(NAME)["active"] is False

    with classify_traffic(rollout.endpoint_url) as live, pytest.raises(ShadowFailed) as failed:
        analyze_shadow(rollout, POLICY, client=client)
    analysis = failed.value.analysis
    assert analysis.verdict == "discarded"
    assert analysis.report is not None
    rate = analysis.report.agreement.rate
    assert rate is not None and 0.6 < rate < 0.8, analysis.report.summary()
    assert analysis.report.flipped > 0 and set(analysis.report.flips) == {"even", "odd"}
    assert "agreement" in analysis.reason
    assert live.failures == [] and len(live.answers) >= POLICY.min_pairs
    assert set(live.by_revision()) == {serving}, "a live caller got the candidate's answer"
    dep = client.get_deployment(NAME)
    assert dep.serving_revision == serving and dep.candidate_revision is None
    assert client.shadow(NAME)["active"] is False

    pairs = client.shadow_pairs(NAME, limit=5)
    assert len(pairs) == 5
    assert {p["serving"] for p in pairs} == {serving}
    assert {p["candidate"] for p in pairs} == {rollout.revision}
    assert all(p["serving_body"]["label"] in ("even", "odd") for p in pairs)
    later = client.shadow_pairs(NAME, since=pairs[-1]["time"], limit=5)
    assert later and later[0]["time"] > pairs[-1]["time"]


def test_an_agreeing_candidate_is_promoted(plane: tuple[Client, str], echo_v1: str) -> None:
    client, _ = plane
    rollout = candidate(client, echo_v1, RUN="agrees")
    with classify_traffic(rollout.endpoint_url) as live:
        analysis = analyze_shadow(rollout, POLICY, client=client)
    assert analysis.promoted, analysis.reason
    assert analysis.report is not None and analysis.report.agreement.rate == 1.0
    assert analysis.report.pairs >= POLICY.min_pairs
    assert live.failures == []
    assert client.get_deployment(NAME).serving_revision == rollout.revision
    kinds = [event.kind for event in client.events(NAME, limit=50)]
    assert "shadow" in kinds and "verdict" in kinds


def test_a_slow_then_killed_candidate_never_hurts_live_traffic_and_drops_are_counted(
    plane: tuple[Client, str], echo_v1: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client, token = plane
    serving = client.get_deployment(NAME).serving_revision
    rollout = candidate(client, echo_v1, CLASSIFY_SLEEP="5")
    connection = ["--endpoint", client.endpoint, "--token", token]
    assert main(["shadow", NAME, "--percent", "100", *connection]) == 0
    said = capsys.readouterr().out
    assert f"100% of the requests to every API are mirrored from {serving} to" in said
    state = client.shadow(NAME)
    assert state["active"] and state["candidate"] == rollout.revision

    headers = {"Authorization": f"Bearer {token}", "Cookie": "bentoship_session=s; theme=dark"}
    seen = httpx.post(f"{rollout.endpoint_url}/headers", json={}, headers=headers, timeout=10)
    assert seen.status_code == 200 and "x-bentoship-shadow" not in seen.json()
    mirrored = wait_for_pair(client, state["started_at"])
    assert mirrored["serving_body"] == seen.json()
    assert mirrored["candidate_body"]["x-bentoship-shadow"] == "1"
    assert "authorization" not in mirrored["candidate_body"]
    assert mirrored["candidate_body"]["cookie"] == "theme=dark"

    with classify_traffic(rollout.endpoint_url) as live:
        live.wait_for(400, timeout=120)
        figures = client.shadow(NAME)
        assert figures["dropped_by_reason"].get("queue_full", 0) > 0, figures
        process = next(r for r in client.list_revisions(NAME) if r.name == rollout.revision)
        assert process.pid is not None
        tree = psutil.Process(process.pid).children(recursive=True)
        for pid in [process.pid, *(child.pid for child in tree)]:
            os.kill(pid, signal.SIGKILL)
        answered = len(live.answers)
        live.wait_for(answered + 200, timeout=60)
    assert live.failures == []
    assert set(live.by_revision()) == {serving}

    deadline = time.monotonic() + 30
    while client.get_deployment(NAME).candidate_revision and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.shadow(NAME)["active"] is False
    assert main(["shadow", NAME, *connection]) == 0
    assert "nothing is mirrored" in capsys.readouterr().out
    client.discard(NAME)
