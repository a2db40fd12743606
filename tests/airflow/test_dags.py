"""Whole DAG runs with ``dag.test()`` on SQLite against a real local control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane

from ..traffic import TrafficLoop, send_drifted_traffic
from .conftest import EXAMPLES


def run_dag(
    dag_id: str, conf: dict[str, Any], file: str = "retrain_and_ship.py", xcoms_of: str = "deploy"
) -> dict[str, str]:
    """Run an example DAG once; return each task's final state, and the XComs (links too) of
    the task ``xcoms_of``."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(EXAMPLES / file))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.get_dag(dag_id).test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    states["run"] = str(dag_run.state)
    with create_session() as session:
        rows = session.query(XComModel).filter_by(
            dag_id=dag_id, run_id=dag_run.run_id, task_id=xcoms_of
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
def test_good_run_bad_run_rolled_back_then_drift_retrains(
    bentocloud_connection: LocalControlPlane, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The deferrable DAG, then the closed loop on the same deployment once its traffic has
    drifted; `make demo` (run by CI after the tests) runs the plain one and the closed loop
    with `airflow dags test`."""
    dag_id, deployment = "retrain_and_ship_deferrable", "af-example-deferred"
    task_logs(capfd)
    good = run_dag(dag_id, {"bad_model": False, "deployment_name": deployment})
    logs = task_logs(capfd)
    assert good["deploy"] == "success" and good["quality_gate"] == "success"
    assert good["shadow_gate"] == "skipped"  # the default: no shadow gate
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
            f"{first.url}/predict", {"features": features}, clients=2, pause=0.1
        ) as live:
            live.wait_for(5)
            bad = run_dag(dag_id, {"bad_model": True, "deployment_name": deployment})
        logs = task_logs(capfd)
        assert "is back on revision" in logs, "the task logs were not captured"
        assert "XCom not found" not in logs  # the failed gate and the rollback link too
        assert bad["deploy"] == "success"
        assert bad["quality_gate"] == "failed"
        assert bad["shadow_gate"] == "upstream_failed"
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

        before_loop = send_drifted_traffic(client, deployment, _train().traffic(200, shift=1.5))
        warehouse = tmp_path / "warehouse.duckdb"
        loop = run_dag(
            "closed_loop",
            {"deployment_name": deployment, "warehouse": str(warehouse)},
            file="closed_loop.py",
            xcoms_of="check_drift",
        )
        logs = task_logs(capfd)
        retrained = client.get_deployment(deployment)
    assert {k: v for k, v in loop.items() if not k.startswith("xcom:")} == {
        "training_features": "success",
        "check_drift": "success",
        "retrain": "success",
        "keep_serving": "skipped",
        "train_model": "success",
        "holdout_payload": "success",
        "build_and_push": "success",
        "deploy": "success",
        "quality_gate": "success",
        "shadow_wanted": "success",
        "shadow_gate": "skipped",  # shadow_min_pairs 0: promoted after the quality gate
        "promote": "success",
        "rollback": "skipped",
        "export_monitoring": "success",
        "run": "success",
    }
    assert "drift: 4 of 4 columns drifted (100%; threshold 50%): f0, f1, f2, f3" in logs
    report = loop["xcom:_link_BentoDriftReportLink"]
    assert report.startswith("file:///") and report.endswith(".html")
    page = Path(url2pathname(urlparse(report).path)).read_text()
    assert 'id="column-f0"' in page and "4 of 4 columns drifted" in page
    assert retrained.serving_revision == "r3" and retrained.bento != first.bento
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as db:
        exported = db.execute("SELECT count(*), count(DISTINCT seq) FROM monitor_classifier")
        total, distinct = exported.fetchone() or (0, 0)
    # everything logged before the loop began, and the quality gate's rows of the new model
    assert total == distinct >= before_loop + 200, (total, distinct, before_loop)
