"""Whole DAG runs with ``dag.test()`` on SQLite against a real local control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane

from ..drift_data import drift_parquet
from ..traffic import TrafficLoop
from .conftest import EXAMPLES


def run_dag(dag_id: str, conf: dict[str, Any]) -> dict[str, str]:
    """Run the example DAG once; return each task's final state, and the deploy task's links."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(EXAMPLES / "retrain_and_ship.py"))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.get_dag(dag_id).test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    states["run"] = str(dag_run.state)
    with create_session() as session:
        rows = session.query(XComModel).filter_by(
            dag_id=dag_id, run_id=dag_run.run_id, task_id="deploy"
        )
        states.update({f"xcom:{row.key}": str(row.value) for row in rows})
    return states


def _train() -> Any:
    import sys

    sys.path.insert(0, str(EXAMPLES / "example_bento"))
    import train

    return train


def holdout_features() -> list[list[float]]:
    features, _ = _train().holdout()
    return [list(map(float, row)) for row in features[:5]]


def serving_accuracy(url: str) -> float:
    features, labels = _train().holdout()
    predictions = httpx.post(f"{url}/predict", json={"features": features.tolist()}).json()
    return sum(int(p == t) for p, t in zip(predictions, labels, strict=True)) / len(labels)


def task_logs(capfd: pytest.CaptureFixture[str]) -> str:
    """What the tasks logged since the last call: ``dag.test()`` runs each task in this process,
    and the task logs go to its stdout and stderr (no log files)."""
    captured = capfd.readouterr()
    return captured.out + captured.err


@pytest.mark.usefixtures("airflow_db")
def test_good_run_then_bad_run_is_rolled_back(
    bentocloud_connection: LocalControlPlane, capfd: pytest.CaptureFixture[str]
) -> None:
    """The deferrable DAG; `make demo` (run by CI after the tests) runs the plain one."""
    dag_id, deployment = "retrain_and_ship_deferrable", "af-example-deferred"
    task_logs(capfd)
    good = run_dag(dag_id, {"bad_model": False, "deployment_name": deployment})
    logs = task_logs(capfd)
    assert good["deploy"] == "success" and good["quality_gate"] == "success"
    assert good["promote"] == "success" and good["rollback"] == "skipped"
    assert good["run"] == "success"
    # Every operator with extra links records them: resolving the links when a task ends
    # reads no missing XCom (the deploy and the quality gate both declare them).
    assert "Smoke test of predict passed" in logs, "the task logs were not captured"
    assert "XCom not found" not in logs
    assert "http://127.0.0.1:" in good["xcom:_link_BentoEndpointLink"]
    assert f"/deployments/{deployment}" in good["xcom:_link_BentoDeploymentLink"]
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        first = client.get_deployment(deployment)
        assert first.status == "running"
        assert serving_accuracy(first.url) >= 0.8

        features = holdout_features()
        with TrafficLoop(
            f"{first.url}/predict", {"features": features}, clients=2, pause=0.05
        ) as live:
            live.wait_for(5)
            bad = run_dag(dag_id, {"bad_model": True, "deployment_name": deployment})
        logs = task_logs(capfd)
        assert "is back on revision" in logs, "the task logs were not captured"
        assert "XCom not found" not in logs  # the failed gate and the rollback link too
        assert bad["deploy"] == "success"
        assert bad["quality_gate"] == "failed"
        assert bad["promote"] == "upstream_failed"
        assert bad["rollback"] == "success"
        assert bad["run"] == "failed"
        # Clients called the endpoint during the whole bad run: the candidate answered none.
        assert live.by_revision() == {first.serving_revision: len(live.answers)}
        assert {a.status for a in live.answers} == {200} and not live.failures
        after = client.get_deployment(deployment)
        assert after.status == "running"
        assert after.serving_revision == first.serving_revision
        assert after.bento == first.bento
        assert serving_accuracy(after.url) >= 0.8
        revisions = client.list_revisions(deployment)
        assert [(r.name, r.phase) for r in revisions] == [("r2", "cancelled"), ("r1", "serving")]


@pytest.mark.usefixtures("airflow_db")
def test_drift_gate_branches_to_retrain_and_links_its_report(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from bentoship_airflow.links.drift import BentoDriftReportLink

    bag = DagBag(dag_folder=str(EXAMPLES / "drift_gate.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("drift_gate")
    report = tmp_path / "report.html"
    conf = {
        "reference": drift_parquet(tmp_path / "train.parquet", 0.0),
        "current": drift_parquet(tmp_path / "traffic.parquet", 0.6),
        "report_path": str(report),
    }
    run = dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"check_drift": "success", "retrain": "success", "keep_serving": "skipped"}
    html = report.read_text()
    assert 'id="column-x"' in html and "1 of 2 columns drifted" in html
    logged = capfd.readouterr()
    assert "drift: 1 of 2 columns drifted (50%; threshold 10%): x" in logged.out + logged.err
    # the link's URL, as Airflow stored it when the task ended
    with create_session() as session:
        stored = (
            session.query(XComModel)
            .filter_by(
                dag_id="drift_gate",
                run_id=run.run_id,
                task_id="check_drift",
                key=f"_link_{BentoDriftReportLink.__name__}",
            )
            .one()
        )
    assert stored.value == report.resolve().as_uri()
