"""Operator behaviours at unit level, against a real local control plane.

The tests that deploy share one deployment, in file order: the deferrable deploy's test creates
it, the others update what the test before left (a test run on its own creates it first)."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push, wait_until_ready

from ..traffic import TrafficLoop
from .test_provider import TaskInstanceStandIn

DEPLOYMENT = "af-ops"
APPROVED = {"envs": {"RUN": "approval"}}
"""The config of the candidate that tests/airflow/dags/approval_gate.py deploys."""
DAGS = Path(__file__).resolve().parent / "dags"


class TaskStateStoreStandIn(dict):  # type: ignore[type-arg]
    """``context["task_state_store"]``: a key-value store that survives task retries."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def test_deferrable_deploy_and_sensor_defer_and_their_triggers_round_trip(
    bentocloud_connection: LocalControlPlane, echo_v1: str
) -> None:
    """The deferrable deploy creates the module's deployment; the sensor defers on its rollout;
    the deploy's trigger, serialized and run as the triggerer would, brings the success."""
    from airflow.sdk.exceptions import AirflowException, TaskDeferred

    from bentoship_airflow.operators.bento import BentoDeployOperator
    from bentoship_airflow.sensors.bento import BentoDeploymentSensor

    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        push(echo_v1, client=client)
    op = BentoDeployOperator(
        task_id="deploy", deployment_name=DEPLOYMENT, bento=echo_v1, deferrable=True
    )
    ti = TaskInstanceStandIn()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    rollout = ti.xcoms["rollout"]
    assert rollout["name"] == DEPLOYMENT and rollout["created"] is True
    assert ti.xcoms["bentoship_links"]["endpoint"] == rollout["endpoint_url"]
    # templated into a string, as XCom values in templates are: the deferral keeps the rollout
    deferring = BentoDeploymentSensor(
        task_id="s",
        deployment_name=DEPLOYMENT,
        rollout=json.dumps(rollout),
        deferrable=True,
        timeout=60,
    )
    with pytest.raises(TaskDeferred) as sensing:
        deferring.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
    assert sensing.value.trigger.rollout == rollout

    classpath, kwargs = deferred.value.trigger.serialize()
    module, _, name = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    event = asyncio.run(trigger.run().__anext__())
    assert event.payload["status"] == "success"
    result = op.execute_complete({"ti": ti}, event.payload)  # type: ignore[arg-type]
    assert result["revision"] == rollout["revision"]

    sensor = BentoDeploymentSensor(task_id="s2", deployment_name=DEPLOYMENT, rollout=rollout)
    assert sensor.poke({"ti": TaskInstanceStandIn()}) is True  # type: ignore[arg-type]
    missing = BentoDeploymentSensor(task_id="s3", deployment_name="af-nowhere")
    with pytest.raises(AirflowException, match="af-nowhere"):
        missing.poke({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
    check_records_sensor(bentocloud_connection, sensor.deployment_name, rollout["endpoint_url"])


def check_records_sensor(plane: LocalControlPlane, name: str, url: str) -> None:
    """The records sensor waits for enough records of a monitor, after a watermark."""
    from bentoship_airflow.sensors.monitoring import BentoMonitoringRecordsSensor

    def sensed(min_records: int, after: str | None = None) -> bool:
        sensor = BentoMonitoringRecordsSensor(
            task_id=f"r{min_records}",
            deployment_name=name,
            monitor="echo_calls",
            min_records=min_records,
            after=after,
        )
        return bool(sensor.poke({"ti": TaskInstanceStandIn()}))  # type: ignore[arg-type]

    assert sensed(1) is False  # no record yet: the monitor does not exist
    for text in ("a", "b", "c"):
        httpx.post(f"{url}/echo", json={"text": text, "monitor": True}).raise_for_status()
    assert sensed(3) is True and sensed(4) is False
    with Client.from_env(home=plane.data_dir) as client:
        first = client.monitoring_records(name, "echo_calls", after=0, limit=1)[0]["seq"]
    assert sensed(2, after=str(first)) is True and sensed(3, after=str(first)) is False


def test_retried_deploy_reattaches_to_its_rollout(
    bentocloud_connection: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    from bentoship_airflow.operators.bento import BentoDeployOperator

    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        for tag in (echo_v1, echo_v2):
            push(tag, client=client)
        # what the test before left serving (created now when this test runs on its own)
        first = BentoDeployOperator(task_id="d", deployment_name=DEPLOYMENT, bento=echo_v1)
        first.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
        store = TaskStateStoreStandIn()
        op = BentoDeployOperator(task_id="d2", deployment_name=DEPLOYMENT, bento=echo_v2)
        attempt = op.execute({"ti": TaskInstanceStandIn(), "task_state_store": store})  # type: ignore[arg-type]
        retry = op.execute({"ti": TaskInstanceStandIn(), "task_state_store": store})  # type: ignore[arg-type]
        assert retry == attempt and retry["changed"] is True
        assert retry["previous_revision"] is not None
        assert len(client.list_revisions(DEPLOYMENT)) == 2


def test_on_kill_mid_rollout_returns_to_last_good_revision(
    bentocloud_connection: LocalControlPlane, echo_v2: str, crash_bento: str
) -> None:
    from bentoship_airflow.operators.bento import BentoDeployOperator

    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        for tag in (echo_v2, crash_bento):
            push(tag, client=client)
        # the good revision: the one the test before left serving (no new revision)
        good = BentoDeployOperator(task_id="d", deployment_name=DEPLOYMENT, bento=echo_v2)
        good_rollout = good.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
        op = BentoDeployOperator(
            task_id="d2", deployment_name=DEPLOYMENT, bento=crash_bento, wait_for_completion=False
        )
        op.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
        assert client.get_deployment(DEPLOYMENT).status == "deploying"
        op.on_kill()
        dep = wait_until_ready(DEPLOYMENT, client=client, timeout=60)
        assert dep.serving_revision == good_rollout["revision"]
        assert dep.target_revision == good_rollout["revision"]


def run_test_dag(
    file: str, dag_id: str, conf: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, dict[str, Any]]:
    """Run a DAG of ``tests/airflow/dags`` once with ``dag.test()``; return the run and every
    task's XComs by task and key.

    ``dag.test()`` runs only a DAG it finds in a DAG bundle: the folder is one, beside the
    examples' (the dags folder)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "bentoship-test-dags", "classpath": local, "kwargs": {"path": str(DAGS)}},
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    bag = DagBag(dag_folder=str(DAGS / file))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.get_dag(dag_id).test(run_conf=conf)
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=dag_run.run_id)
        xcoms = {f"{row.task_id}:{row.key}": XComModel.deserialize_value(row) for row in rows}
    return dag_run, xcoms


@pytest.mark.usefixtures("airflow_db")
def test_shadow_gate_discards_a_disagreeing_candidate_from_the_triggerer(
    bentocloud_connection: LocalControlPlane,
    echo_v2: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DAG deploys a candidate that flips 30% of its labels and gates it on shadow traffic:
    the deferred task fails with the analysis, and live callers only ever got the serving
    revision."""
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        push(echo_v2, client=client)
        # what the tests before left serving (created now when this test runs on its own)
        wait_until_ready(deploy(DEPLOYMENT, echo_v2, client=client), client=client, timeout=120)
        serving = client.get_deployment(DEPLOYMENT)
    capfd.readouterr()
    conf = {"deployment_name": DEPLOYMENT, "bento": echo_v2, "flip_percent": 30}
    with TrafficLoop(
        f"{serving.url}/classify", clients=3, pause=0.05, payloads=lambda n: {"x": n}
    ) as live:
        dag_run, xcoms = run_test_dag("shadow_gate.py", "shadow_gate", conf, monkeypatch)
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states == {"deploy": "success", "shadow": "failed"}, logs[-3000:]
    assert str(dag_run.state) == "failed"
    # the task deferred, and its verdict came from the trigger, which dag.test() runs inline
    assert "The control plane runs the shadow analysis of af-ops; deferring" in logs
    assert "[DAG TEST] running trigger in line" in caplog.text

    candidate = xcoms["deploy:rollout"]["revision"]
    analysis = xcoms["shadow:shadow_analysis"]
    assert analysis["verdict"] == "discarded" and analysis["candidate"] == candidate
    assert analysis["baseline"] == serving.serving_revision
    assert "agreement" in analysis["reason"]
    rate = analysis["report"]["agreement"]["rate"]
    assert 0.6 < rate < 0.8 and analysis["report"]["pairs"] >= 200, analysis["report"]
    assert analysis["policy"]["min_pairs"] == 200 and analysis["policy"]["apis"] == ["classify"]
    assert f"shadow {candidate} of {DEPLOYMENT} was discarded" in logs
    assert live.failures == [] and set(live.by_revision()) == {serving.serving_revision}
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        after = client.get_deployment(DEPLOYMENT)
    assert after.serving_revision == serving.serving_revision
    assert after.candidate_revision is None

    # the report link: the console's sign-in, then the report of these pairs
    link = xcoms["shadow:_link_BentoShadowReportLink"]
    assert link.startswith(f"{bentocloud_connection.endpoint}/login?next=")
    with httpx.Client(follow_redirects=True) as browser:
        form = browser.get(link)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        target = re.search(r'name="next" value="([^"]+)"', form.text)
        assert csrf is not None and target is not None
        token = bentocloud_connection.connection.token  # type: ignore[union-attr]
        fields = {"csrf_token": csrf[1], "next": target[1], "token": token}
        page = browser.post(f"{bentocloud_connection.endpoint}/login", data=fields)
    assert page.status_code == 200 and str(page.url).endswith(f"/{DEPLOYMENT}/shadow/report")
    assert "<h1>Shadow report: " in page.text and f"candidate {candidate} agrees" in page.text


@pytest.mark.usefixtures("airflow_db")
def test_an_approval_waits_in_the_triggerer_and_a_persons_yes_promotes(
    bentocloud_connection: LocalControlPlane,
    echo_v2: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The approval task defers; a person approves (through the API, as the console and the
    CLI do); the run ends in success with the candidate serving."""
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        push(echo_v2, client=client)
        wait_until_ready(deploy(DEPLOYMENT, echo_v2, client=client), client=client, timeout=120)

        def approve_when_asked() -> None:
            for _ in range(600):
                pending = [a for a in client.approvals(DEPLOYMENT) if a["state"] == "pending"]
                if pending:
                    client.approve(DEPLOYMENT, pending[0]["id"], "looks right")
                    return
                time.sleep(0.1)

        person = threading.Thread(target=approve_when_asked)
        person.start()
        capfd.readouterr()
        conf = {"deployment_name": DEPLOYMENT, "bento": echo_v2}
        dag_run, xcoms = run_test_dag("approval_gate.py", "approval_gate", conf, monkeypatch)
        person.join(60)
        logs = "".join(capfd.readouterr())
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        assert states == {"deploy": "success", "approval": "success"}, logs[-3000:]
        assert (
            f"is pending; deferring until someone decides (`bentoship approve {DEPLOYMENT}`" in logs
        )
        assert "[DAG TEST] running trigger in line" in caplog.text
        decision = xcoms["approval:return_value"]
        candidate = xcoms["deploy:rollout"]["revision"]
        assert decision["state"] == "approved" and decision["revision"] == candidate
        assert decision["comment"] == "looks right" and decision["evidence"]["run"]
        assert client.get_deployment(DEPLOYMENT).serving_revision == candidate


def serve_approved(client: Client, echo_v1: str, echo_v2: str) -> None:
    """Push both bentos and serve what the approval test leaves serving (v2, approved config):
    nothing changes after that test; when a test runs on its own, this creates it."""
    for tag in (echo_v1, echo_v2):
        push(tag, client=client)
    wait_until_ready(
        deploy(DEPLOYMENT, echo_v2, APPROVED, client=client), client=client, timeout=120
    )


def ship_without_approval(
    client: Client, bento: str, conf: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run the approval DAG, whose candidate (``bento``) is not approved; check the run failed
    in its approval task, with the candidate discarded and the endpoint on the revision it
    served. Returns the approval's decision (the task's ``approval`` XCom)."""
    before = client.get_deployment(DEPLOYMENT)
    dag_run, xcoms = run_test_dag(
        "approval_gate.py",
        "approval_gate",
        {"deployment_name": DEPLOYMENT, "bento": bento, **conf},
        monkeypatch,
    )
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert (states, str(dag_run.state)) == ({"deploy": "success", "approval": "failed"}, "failed")
    candidate = xcoms["deploy:rollout"]["revision"]
    assert candidate != before.serving_revision
    decision = xcoms["approval:approval"]
    assert decision["revision"] == candidate
    deadline = time.monotonic() + 60
    while (after := client.get_deployment(DEPLOYMENT)).candidate_revision is not None:
        assert time.monotonic() < deadline, after  # the control plane discards it
        time.sleep(0.2)
    assert after.serving_revision == before.serving_revision and after.bento == before.bento
    assert after.status == "running"
    phases = {rev.name: rev.phase for rev in client.list_revisions(DEPLOYMENT)}
    assert phases[candidate] == "cancelled" and phases[before.serving_revision] == "serving"
    return decision


@pytest.mark.usefixtures("airflow_db")
def test_a_run_rejected_with_the_cli_fails_and_discards_its_candidate(
    bentocloud_connection: LocalControlPlane,
    echo_v1: str,
    echo_v2: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the approval task waits in the triggerer, a person runs `bentoship reject`: the
    run fails, the control plane discards the candidate, and the old revision serves on."""
    from bentoship import cli

    assert bentocloud_connection.connection is not None
    endpoint, token = bentocloud_connection.endpoint, bentocloud_connection.connection.token
    said = "the echo is too loud"
    exits: list[int] = []
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        serve_approved(client, echo_v1, echo_v2)

        def reject_when_asked() -> None:
            with Client(endpoint, token) as own:
                for _ in range(1200):
                    if any(a["state"] == "pending" for a in own.approvals(DEPLOYMENT)):
                        argv = ["reject", DEPLOYMENT, "--comment", said]
                        exits.append(cli.main([*argv, "--endpoint", endpoint, "--token", token]))
                        return
                    time.sleep(0.1)

        person = threading.Thread(target=reject_when_asked)
        person.start()
        capfd.readouterr()
        decision = ship_without_approval(client, echo_v1, {}, monkeypatch)
        person.join(60)
        logs = "".join(capfd.readouterr())
        events = [event.message for event in client.events(DEPLOYMENT)]
    assert exits == [0], logs[-3000:]
    candidate = decision["revision"]
    assert f"{DEPLOYMENT}: approval {decision['id']} of {candidate} rejected" in logs
    assert (decision["state"], decision["decided_by"]) == ("rejected", "server token")
    assert decision["comment"] == said
    assert "[DAG TEST] running trigger in line" in caplog.text  # the triggerer held the task
    assert f"candidate {candidate} of {DEPLOYMENT} was not approved (rejected by server" in logs
    assert f"approval {decision['id']} of {candidate} rejected by server token: {said}" in events
    assert f"{candidate} discarded" in events


@pytest.mark.usefixtures("airflow_db")
def test_a_run_nobody_approves_in_time_fails_and_discards_its_candidate(
    bentocloud_connection: LocalControlPlane,
    echo_v1: str,
    echo_v2: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nobody decides within ``approval_timeout``: the control plane expires the approval and
    discards the candidate, and the run fails."""
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        serve_approved(client, echo_v1, echo_v2)
        capfd.readouterr()
        decision = ship_without_approval(client, echo_v1, {"approval_timeout": 2}, monkeypatch)
        logs = "".join(capfd.readouterr())
        events = [event.message for event in client.events(DEPLOYMENT)]
        recorded = next(a for a in client.approvals(DEPLOYMENT) if a["id"] == decision["id"])
    candidate = decision["revision"]
    assert (decision["state"], decision["decided_by"]) == ("expired", None)
    assert recorded["state"] == "expired" and recorded["revision"] == candidate
    assert f"candidate {candidate} of {DEPLOYMENT} was not approved (expired: nobody" in logs
    expired = (
        f"approval {decision['id']} of {candidate} expired: nobody decided before the deadline"
    )
    assert expired in events and f"{candidate} discarded" in events


def test_deferrable_canary_analysis_defers_and_the_trigger_brings_the_verdict(
    bentocloud_connection: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from bentoship_airflow.operators.bento import BentoCanaryAnalysisOperator

    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        serve_approved(client, echo_v1, echo_v2)
        rollout = deploy(DEPLOYMENT, echo_v1, candidate=True, client=client)
        wait_until_ready(rollout, client=client, timeout=90)
    op = BentoCanaryAnalysisOperator(
        task_id="canary",
        rollout=rollout.to_dict(),
        steps=[50, 100],
        interval=1,
        min_requests=5,
        p99_slack_ms=250,  # a fresh candidate's first answers, on a busy machine
        deferrable=True,
    )
    ti = TaskInstanceStandIn()
    with TrafficLoop(f"{rollout.endpoint_url}/echo", clients=2, pause=0.01) as traffic:
        with pytest.raises(TaskDeferred) as deferred:
            op.execute({"ti": ti})  # type: ignore[arg-type]
        classpath, kwargs = deferred.value.trigger.serialize()
        module, _, name = classpath.rpartition(".")
        trigger = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
        event = asyncio.run(trigger.run().__anext__())
    assert traffic.failures == []
    assert event.payload["status"] == "success", event.payload
    result = op.execute_complete({"ti": ti}, event.payload)  # type: ignore[arg-type]
    assert result["verdict"] == "promoted" and result["candidate"] == rollout.revision
    assert [step["weight"] for step in result["steps"]] == [50, 100]
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        assert client.get_deployment(DEPLOYMENT).serving_revision == rollout.revision


def test_the_approval_trigger_serializes_to_itself() -> None:
    from bentoship_airflow.triggers.bento import BentoApprovalTrigger

    trigger = BentoApprovalTrigger("svc", "a1b2", bentocloud_conn_id="bc", deadline=99.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "bentoship_airflow.triggers.bento.BentoApprovalTrigger"
    again = BentoApprovalTrigger(**kwargs)
    assert (again.deployment_name, again.approval_id, again.deadline) == ("svc", "a1b2", 99.5)


def test_rollback_without_recorded_rollout_is_skipped() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from bentoship_airflow.operators.bento import BentoRollbackOperator

    class NoXCom(TaskInstanceStandIn):
        def xcom_pull(self, **kwargs: Any) -> None:
            return None

    op = BentoRollbackOperator(task_id="r", deploy_task_id="deploy")
    ti = NoXCom()
    with pytest.raises(AirflowSkipException, match="nothing to roll back"):
        op.execute({"ti": ti})  # type: ignore[arg-type]
    # an empty links record: resolving the links when the task ends finds no missing XCom
    assert ti.xcoms == {"bentoship_links": {}}


def test_promote_canary_and_approval_without_a_rollout_say_what_to_give() -> None:
    from airflow.sdk.exceptions import AirflowException

    from bentoship_airflow.operators.bento import (
        BentoApprovalOperator,
        BentoCanaryAnalysisOperator,
        BentoPromoteOperator,
    )

    class NoXCom(TaskInstanceStandIn):
        def xcom_pull(self, **kwargs: Any) -> None:
            return None

    for op, problem in (
        (BentoPromoteOperator(task_id="p", deploy_task_id="deploy"), "or a deployment_name"),
        (BentoCanaryAnalysisOperator(task_id="c", deploy_task_id="deploy"), "candidate=True"),
        (BentoApprovalOperator(task_id="a", deploy_task_id="deploy"), "candidate=True"),
    ):
        ti = NoXCom()
        with pytest.raises(AirflowException, match=problem):
            op.execute({"ti": ti})  # type: ignore[arg-type]
        assert ti.xcoms == {"bentoship_links": {}}


def test_smoke_test_records_its_links_whether_it_passes_or_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx
    from airflow.sdk.exceptions import AirflowException

    from bentoship_airflow.operators.bento import BentoSmokeTestOperator

    server = {"conn_type": "bentocloud", "host": "http://127.0.0.1:9", "password": "t" * 20}
    monkeypatch.setenv("AIRFLOW_CONN_BENTOCLOUD_DEFAULT", json.dumps(server))
    answers: list[str] = []

    def answer(method: str, url: str, **kwargs: Any) -> httpx.Response:
        answers.append(url)
        return httpx.Response(200, json={"text": "ok"})

    monkeypatch.setattr(httpx, "request", answer)
    rollout = {"name": "svc", "bento": "svc:v1", "revision": "r1", "endpoint_url": "http://svc:1"}
    links = {"deployment": "http://127.0.0.1:9/deployments/svc", "endpoint": "http://svc:1"}

    passing = TaskInstanceStandIn()
    op = BentoSmokeTestOperator(task_id="p", rollout=rollout, api="echo", expected={"text": "ok"})
    assert op.execute({"ti": passing}) == {"text": "ok"}  # type: ignore[arg-type]
    assert passing.xcoms["bentoship_links"] == links

    failing = TaskInstanceStandIn()
    op = BentoSmokeTestOperator(task_id="f", rollout=rollout, api="echo", expected={"text": "no"})
    with pytest.raises(AirflowException, match="expected"):
        op.execute({"ti": failing})  # type: ignore[arg-type]
    assert failing.xcoms["bentoship_links"] == links
    assert answers == ["http://svc:1/echo", "http://svc:1/echo"]


def test_shadow_operator_reads_templated_numbers_and_says_what_to_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.exceptions import AirflowException
    from airflow.sdk.execution_time.xcom import XCom

    from bentoship import ShadowPolicy
    from bentoship_airflow.links.shadow import BentoShadowReportLink
    from bentoship_airflow.operators.bento import BentoShadowAnalysisOperator

    rendered = BentoShadowAnalysisOperator(
        task_id="s", percent="50", min_pairs="150", min_agreement="0.9", apis=["classify"]
    )
    assert rendered.policy() == ShadowPolicy(
        percent=50, min_pairs=150, min_agreement=0.9, apis=("classify",)
    )
    with pytest.raises(AirflowException, match="min_pairs are whole numbers"):
        BentoShadowAnalysisOperator(task_id="s", min_pairs="many").policy()

    class NoXCom(TaskInstanceStandIn):
        def xcom_pull(self, **kwargs: Any) -> None:
            return None

    op = BentoShadowAnalysisOperator(task_id="s", deploy_task_id="deploy")
    ti = NoXCom()
    with pytest.raises(AirflowException, match="candidate=True"):
        op.execute({"ti": ti})  # type: ignore[arg-type]
    # empty link records: resolving the links when the task ends finds no missing XCom
    assert ti.xcoms == {"bentoship_links": {}, "bentoship_shadow_report": {}}
    monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key: ti.xcoms[key])
    assert BentoShadowReportLink().get_link(op, ti_key=None) == ""  # type: ignore[arg-type]
    with pytest.raises(AirflowException, match="no verdict yet"):
        op.execute_complete({"ti": ti}, {"status": "error", "message": "no verdict yet"})  # type: ignore[arg-type]


def test_shadow_report_link_opens_the_report_through_the_console_sign_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.execution_time.xcom import XCom

    from bentoship_airflow.links.shadow import BentoShadowReportLink, persist_shadow_report_link
    from bentoship_airflow.operators.bento import BentoShadowAnalysisOperator

    ti = TaskInstanceStandIn()
    persist_shadow_report_link(
        {"ti": ti},  # type: ignore[arg-type]
        endpoint="http://127.0.0.1:4321/",
        deployment="svc",
    )
    monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key: ti.xcoms[key])
    link = BentoShadowReportLink().get_link(
        BentoShadowAnalysisOperator(task_id="s"),
        ti_key=None,  # type: ignore[arg-type]
    )
    assert (
        link == "http://127.0.0.1:4321/login?next=%2Fapi%2Fv2%2Fdeployments%2Fsvc%2Fshadow%2Freport"
    )
    declared = BentoShadowAnalysisOperator.operator_extra_links
    assert any(isinstance(declared_link, BentoShadowReportLink) for declared_link in declared)


def test_shadow_trigger_serializes_to_itself() -> None:
    import importlib

    from bentoship_airflow.triggers.bento import BentoShadowAnalysisTrigger

    trigger = BentoShadowAnalysisTrigger("svc", bentocloud_conn_id="bc", deadline=1234.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "bentoship_airflow.triggers.bento.BentoShadowAnalysisTrigger"
    assert kwargs == {"deployment_name": "svc", "bentocloud_conn_id": "bc", "deadline": 1234.5}
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (classpath, kwargs)
