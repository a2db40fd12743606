"""The plain tasks, called one by one as Flyte runs them locally, against a real control plane."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from importlib.metadata import entry_points
from pathlib import Path

import bentoml
import httpx
import pytest
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.tools.translator import get_serializable
from flytekit.types.file import FlyteFile

from bentoship import Client, Rollout
from bentoship.server import LocalControlPlane
from bentoship.steps import push
from flytekitplugins.bentoship import (
    BentoDeploymentTask,
    analyze_shadow,
    build_bento,
    check_drift,
    check_quality,
    deploy_and_wait,
    deploy_bento,
    push_bento,
    request_approval,
    rollback_deployment,
    send_feedback,
    smoke_test_deployment,
    wait_for_deployment,
)

from ..drift_data import drift_parquet
from ..traffic import TrafficLoop

ALL_TASKS = (
    build_bento,
    push_bento,
    deploy_bento,
    wait_for_deployment,
    smoke_test_deployment,
    rollback_deployment,
    deploy_and_wait,
    analyze_shadow,
    check_drift,
    send_feedback,
    check_quality,
    request_approval,
)


DEPLOYMENT = "steps"
"""The one deployment of the module: the first test creates it, the tests after update it."""
CONFIG = {"envs": {"MODE": "a"}}


def echo(version: str) -> dict[str, str]:
    return {"text": "hi", "version": version}


def decks_since(started: float) -> list[Path]:
    """The deck files local Flyte runs wrote since ``started``."""
    from flytekit import FlyteContextManager

    sandbox = Path(FlyteContextManager.current_context().file_access.local_sandbox_dir)
    return [p for p in sandbox.rglob("deck.html") if p.stat().st_mtime >= started]


def test_tasks_use_endpoint_and_token_inputs_before_the_secret(
    shared_plane: LocalControlPlane,
    api: Client,
    echo_v1: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    monkeypatch.setenv("_FSEC_BENTOSHIP_API_KEY", "wrong-secret-token")

    archive = tmp_path / "echo.bento"
    bentoml.bentos.export_bento(echo_v1, str(archive))
    pushed = push_bento(bento=FlyteFile(str(archive)), force=True, endpoint=endpoint, token=token)
    assert pushed == echo_v1  # forced: another module may have pushed it to the worker's plane
    assert api.bento_uploaded(echo_v1)

    rollout_json = deploy_bento(
        name=DEPLOYMENT, bento=echo_v1, config=CONFIG, endpoint=endpoint, token=token
    )
    rollout = Rollout.from_json(rollout_json)
    assert rollout.name == DEPLOYMENT and rollout.created
    with pytest.raises(Exception, match="rejected the API token"):
        wait_for_deployment(rollout=rollout_json, endpoint=endpoint)

    monkeypatch.setenv("_FSEC_BENTOSHIP_API_KEY", token)
    url = wait_for_deployment(rollout=rollout_json, endpoint=endpoint)
    assert url == rollout.endpoint_url
    with pytest.raises(Exception, match="rejected the API token"):
        deploy_bento(name=DEPLOYMENT, bento=echo_v1, endpoint=endpoint, token="wrong-input-token")


@pytest.mark.usefixtures("cloud_env")
def test_tasks_deploy_smoke_test_and_roll_back(api: Client, echo_v1: str, echo_v2: str) -> None:
    push(echo_v1, client=api)
    push(echo_v2, client=api)
    # the revision the test before created (created now when this test runs on its own)
    first = deploy_bento(name=DEPLOYMENT, bento=echo_v1, config=CONFIG)
    wait_for_deployment(rollout=first, poll_interval=0.5)
    again = Rollout.from_json(deploy_bento(name=DEPLOYMENT, bento=echo_v1, config=CONFIG))
    assert not again.changed and again.revision == Rollout.from_json(first).revision

    second = deploy_bento(name=DEPLOYMENT, bento=echo_v2, config=CONFIG)
    url = wait_for_deployment(rollout=second)
    answer = smoke_test_deployment(
        rollout=second, api="echo", payload={"text": "hi"}, expected=json.dumps(echo("v2"))
    )
    assert json.loads(answer) == echo("v2")
    hello = smoke_test_deployment(rollout=DEPLOYMENT, api="hello", expected='"hello from v2"')
    assert json.loads(hello) == "hello from v2"
    with pytest.raises(Exception, match="expected"):
        smoke_test_deployment(
            rollout=url, api="echo", payload={"text": "hi"}, expected=json.dumps(echo("v9"))
        )

    serving = rollback_deployment(rollout=second)
    assert serving == Rollout.from_json(first).revision
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.serving_revision == serving and dep.bento == echo_v1
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json() == echo("v1")
    assert rollback_deployment(rollout=first) == ""


@pytest.mark.usefixtures("cloud_env")
def test_deploy_and_wait_is_the_connector_tasks_plain_twin(
    api: Client, echo_v1: str, echo_v2: str
) -> None:
    connector_task = BentoDeploymentTask(name="tests.flyte.twin")
    plain = deploy_and_wait.python_interface
    assert set(connector_task.python_interface.inputs) <= set(plain.inputs)
    assert set(connector_task.python_interface.outputs) == set(plain.outputs)

    push(echo_v1, client=api)
    push(echo_v2, client=api)
    # a bento the deployment does not serve (it serves v1 after the test before; it is
    # created with v1 first when this test runs on its own): a rollout to wait for
    if api.find_deployment(DEPLOYMENT) is None:
        deploy_bento(name=DEPLOYMENT, bento=echo_v1, config=CONFIG)
    rollout_json, url = deploy_and_wait(name=DEPLOYMENT, bento=echo_v2, poll_interval=0.5)
    rollout = Rollout.from_json(rollout_json)
    assert rollout.changed
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.serving_revision == rollout.revision and url == dep.url
    assert httpx.post(f"{url}/echo", json={"text": "hi"}).json() == echo("v2")


@pytest.mark.usefixtures("cloud_env")
def test_analyze_shadow_promotes_an_agreeing_candidate_with_its_report_as_a_deck(
    api: Client, echo_v1: str
) -> None:
    push(echo_v1, client=api)
    # the module's deployment (serving echo v2 after the tests before; created with v1 first
    # when this test runs on its own): only the candidate starts a process
    if api.find_deployment(DEPLOYMENT) is None:
        wait_for_deployment(rollout=deploy_bento(name=DEPLOYMENT, bento=echo_v1, config=CONFIG))
    before = api.get_deployment(DEPLOYMENT)
    agrees = {"envs": {**CONFIG["envs"], "RUN": "agrees"}}
    held = deploy_bento(name=DEPLOYMENT, bento=echo_v1, config=agrees, candidate=True)
    wait_for_deployment(rollout=held)
    started = time.time()
    with TrafficLoop(
        f"{before.url}/classify", clients=3, pause=0.05, payloads=lambda n: {"x": n}
    ) as live:
        answer = analyze_shadow(
            rollout=held, min_pairs=100, timeout=120.0, apis=["classify"], p99_slack_ms=250.0
        )
    candidate, promoted = Rollout.from_json(held), Rollout.from_json(answer)
    assert promoted.revision == candidate.revision != before.serving_revision
    assert not promoted.candidate and promoted.url == before.url
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.serving_revision == candidate.revision and dep.candidate_revision is None
    assert live.failures == [] and live.by_revision()[before.serving_revision] > 0
    (deck,) = decks_since(started)
    page = deck.read_text()
    assert "Shadow report" in page
    agreement = f"candidate {candidate.revision} agrees with serving {before.serving_revision}"
    assert f"{agreement} on 100.0% of" in page


def _shadow_task_with(monkeypatch: pytest.MonkeyPatch, fake: object, **inputs: object) -> str:
    """The analyze_shadow task, run locally, with ``fake`` as the step."""
    import bentoship.steps

    monkeypatch.setattr(bentoship.steps, "analyze_shadow", fake)
    candidate = Rollout("svc", "svc:v2", "r2", "http://127.0.0.1:9", candidate=True)
    server = {"endpoint": "http://127.0.0.1:9", "token": "token-not-in-any-deck"}
    return analyze_shadow(rollout=candidate.to_json(), **server, **inputs)


def test_analyze_shadow_task_hands_the_policy_over_and_shows_only_the_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bentoship import ShadowAnalysis, ShadowFailed, ShadowPolicy

    seen: list[ShadowPolicy] = []

    def agree(rollout: str, policy: dict, *, client: object) -> ShadowAnalysis:
        seen.append(ShadowPolicy.from_dict(policy))
        return ShadowAnalysis("svc", "r2", "r1", "promoted", "all 7 pairs agree")

    started = time.time()
    promoted = Rollout.from_json(_shadow_task_with(monkeypatch, agree, apis=[]))
    assert promoted.revision == "r2" and not promoted.candidate
    _shadow_task_with(monkeypatch, agree, min_pairs=100, timeout=120.0, apis=["classify"])
    assert seen == [ShadowPolicy(), ShadowPolicy(min_pairs=100, timeout=120.0, apis=("classify",))]
    decks = [deck.read_text() for deck in decks_since(started)]
    assert len(decks) == 2
    assert all("promoted: all 7 pairs agree" in deck for deck in decks)
    assert not any("token-not-in-any-deck" in deck for deck in decks)

    def disagree(rollout: str, policy: dict, *, client: object) -> None:
        analysis = ShadowAnalysis("svc", "r2", "r1", "discarded", "agreement 70%")
        raise ShadowFailed("shadow r2 of svc was discarded", deployment="svc", analysis=analysis)

    with pytest.raises(Exception, match="shadow r2 of svc was discarded"):
        _shadow_task_with(monkeypatch, disagree)


@pytest.mark.usefixtures("cloud_env")
def test_request_approval_waits_for_a_person_and_the_approved_candidate_serves(
    api: Client, echo_v1: str
) -> None:
    push(echo_v1, client=api)
    # the module's deployment (serving after the tests before; created with v1 first when this
    # test runs on its own): only the candidate starts a process
    if api.find_deployment(DEPLOYMENT) is None:
        wait_for_deployment(rollout=deploy_bento(name=DEPLOYMENT, bento=echo_v1, config=CONFIG))
    before = api.get_deployment(DEPLOYMENT).serving_revision
    held = deploy_bento(
        name=DEPLOYMENT,
        bento=echo_v1,
        config={"envs": {**CONFIG["envs"], "RUN": "approve me"}},
        candidate=True,
    )
    wait_for_deployment(rollout=held)
    asked: list[dict] = []

    def person() -> None:
        """Approves through the API once the task's approval is pending."""
        for _ in range(1200):
            pending = [a for a in api.approvals(DEPLOYMENT) if a["state"] == "pending"]
            if pending:
                asked.append(pending[0])
                api.approve(DEPLOYMENT, pending[0]["id"], "figures are fine")
                return
            time.sleep(0.1)

    approver = threading.Thread(target=person)
    approver.start()
    started = time.time()
    try:
        decided = request_approval(
            rollout=held,
            message="ship it?",
            timeout=120.0,  # a test that never approves fails: the plane discards then
            evidence={"holdout_accuracy": 0.89, "rows": 3},
        )
    finally:
        approver.join(60)
    assert tuple(decided) == ("approved", "server token", "figures are fine")
    candidate = Rollout.from_json(held)
    (pending,) = asked
    assert pending["revision"] == candidate.revision and pending["message"] == "ship it?"
    assert pending["evidence"] == {"holdout_accuracy": 0.89, "rows": 3}
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.serving_revision == candidate.revision != before
    assert dep.candidate_revision is None
    (deck,) = decks_since(started)
    page = deck.read_text()
    assert "Approved by <b>server token</b>: figures are fine" in page
    assert "<th>holdout_accuracy</th><td>0.89</td>" in page


def test_request_approval_task_not_required_asks_nobody_and_a_rejection_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bentoship.steps
    from bentoship import ApprovalRejected
    from bentoship.steps import Approval

    for name in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY", "BENTOSHIP_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no server anywhere: none is asked
    candidate = Rollout("svc", "svc:v2", "r2", "http://127.0.0.1:9", candidate=True)
    started = time.time()
    skipped = request_approval(rollout=candidate.to_json(), evidence={"n": 3}, required=False)
    assert tuple(skipped) == ("not_required", "", "")
    (deck,) = decks_since(started)
    assert "No approval was required" in deck.read_text()

    seen: list[dict] = []

    def reject(rollout: str, message: str, **kwargs: object) -> Approval:
        seen.append({k: v for k, v in kwargs.items() if k != "client"})
        approval = Approval("a1", "svc", "r2", "rejected", message, {}, "lead", "p99 too high")
        if kwargs["raise_on_failure"]:
            raise ApprovalRejected(
                "candidate r2 of svc was not approved", deployment="svc", approval=approval
            )
        return approval

    monkeypatch.setattr(bentoship.steps, "request_approval", reject)
    server = {"endpoint": "http://127.0.0.1:9", "token": "token-not-in-any-deck"}
    with pytest.raises(Exception, match="candidate r2 of svc was not approved"):
        request_approval(rollout=candidate.to_json(), timeout=60.0, **server)
    started = time.time()
    branching = request_approval(rollout=candidate.to_json(), raise_on_failure=False, **server)
    assert tuple(branching) == ("rejected", "lead", "p99 too high")  # for a conditional
    assert seen == [
        {"evidence": None, "raise_on_failure": True, "timeout": 60.0},
        {"evidence": None, "raise_on_failure": False},  # bentoship's default timeout
    ]
    (deck,) = decks_since(started)
    page = deck.read_text()
    assert "Rejected by <b>lead</b>: p99 too high" in page
    assert "token-not-in-any-deck" not in page  # no inputs deck


def test_tasks_are_never_cached_and_request_the_secret() -> None:
    settings = SerializationSettings(ImageConfig.auto_default_image())
    for task in ALL_TASKS:
        template = get_serializable(OrderedDict(), settings, task).template
        assert not template.metadata.discoverable, task.name
        if task is not build_bento:
            secrets = template.security_context.secrets
            assert [(s.group, s.key) for s in secrets] == [("bentoship", "api_key")]


@pytest.mark.slow
def test_entry_point_registers_the_connector_without_importing_bentoml() -> None:
    found = [ep for ep in entry_points(group="flytekit.plugins") if ep.name == "bentoship"]
    assert [ep.value for ep in found] == ["flytekitplugins.bentoship"]
    probe = (
        "import sys, flytekit\n"
        "from flytekit.extend.backend.base_connector import ConnectorRegistry\n"
        "c = ConnectorRegistry.get_connector('bentoship_deployment')\n"
        "print(type(c).__module__, 'bentoml' in sys.modules, 'httpx' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["flytekitplugins.bentoship.connector", "False", "False"]


@pytest.mark.slow  # Evidently's preset
def test_drift_report_is_a_deck(tmp_path: Path) -> None:
    from flytekit import FlyteContextManager

    sandbox = Path(FlyteContextManager.current_context().file_access.local_sandbox_dir)
    started = time.time()
    found = check_drift(
        reference=drift_parquet(tmp_path / "train.parquet", 0.0),
        current=drift_parquet(tmp_path / "traffic.parquet", 0.6),
        share=0.1,
        evidently=True,
        token="token-not-in-any-deck",  # unused: both sides are files
    )
    assert found.drifted is True and found.share_drifted == 0.5
    assert found.summary == "drift: 1 of 2 columns drifted (50%; threshold 10%): x; compared: x, y"
    assert 'id="column-x"' in Path(found.report.path).read_text()
    decks = [p for p in sandbox.rglob("deck.html") if p.stat().st_mtime >= started]
    assert len(decks) == 1
    deck = decks[0].read_text()
    assert "Drift report" in deck and "column-x" in deck
    assert "Evidently report" in deck and "Dataset Drift" in deck
    assert "token-not-in-any-deck" not in deck  # no inputs deck
