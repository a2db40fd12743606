"""The drift gate DAG under ``dag.test()``: it branches on drift and links its report."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from .conftest import EXAMPLES


def parquet(path: Path, shift: float) -> str:
    rng = np.random.default_rng(3)
    with duckdb.connect() as db:
        db.register("frame", {"x": rng.normal(shift, 1, 2000), "y": rng.normal(0, 1, 2000)})
        db.execute(f"COPY frame TO '{path}' (FORMAT parquet)")
    return str(path)


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
        "reference": parquet(tmp_path / "train.parquet", 0.0),
        "current": parquet(tmp_path / "traffic.parquet", 0.6),
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
