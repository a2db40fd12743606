"""Operator behaviours at unit level, against a real local control plane.

The tests that deploy share one deployment, in file order: the sensor's test creates it, the
others update what the test before left (a test run on its own creates it first)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import push, wait_until_ready

from .test_provider import TaskInstanceStandIn

DEPLOYMENT = "af-ops"


class TaskStateStoreStandIn(dict):  # type: ignore[type-arg]
    """``context["task_state_store"]``: a key-value store that survives task retries."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def test_sensor_pokes_and_defers(bentocloud_connection: LocalControlPlane, echo_v1: str) -> None:
    from airflow.sdk.exceptions import AirflowException, TaskDeferred

    from bentoship_airflow.operators.bento import BentoDeployOperator
    from bentoship_airflow.sensors.bento import BentoDeploymentSensor

    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        push(echo_v1, client=client)
    # creates the module's deployment: a rollout to sense
    deploy = BentoDeployOperator(
        task_id="d", deployment_name=DEPLOYMENT, bento=echo_v1, wait_for_completion=False
    )
    rollout = deploy.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
    # templated into a string, as XCom values in templates are: the deferral keeps the rollout
    deferring = BentoDeploymentSensor(
        task_id="s",
        deployment_name=DEPLOYMENT,
        rollout=json.dumps(rollout),
        deferrable=True,
        timeout=60,
    )
    with pytest.raises(TaskDeferred) as deferred:
        deferring.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
    assert deferred.value.trigger.rollout == rollout
    sensor = BentoDeploymentSensor(task_id="s2", deployment_name=DEPLOYMENT, rollout=rollout)
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        wait_until_ready(DEPLOYMENT, client=client, timeout=60)
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


def test_promote_and_canary_without_a_rollout_say_what_to_give() -> None:
    from airflow.sdk.exceptions import AirflowException

    from bentoship_airflow.operators.bento import (
        BentoCanaryAnalysisOperator,
        BentoPromoteOperator,
    )

    class NoXCom(TaskInstanceStandIn):
        def xcom_pull(self, **kwargs: Any) -> None:
            return None

    for op, problem in (
        (BentoPromoteOperator(task_id="p", deploy_task_id="deploy"), "or a deployment_name"),
        (BentoCanaryAnalysisOperator(task_id="c", deploy_task_id="deploy"), "candidate=True"),
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
