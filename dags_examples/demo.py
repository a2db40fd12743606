"""`make demo`: the Airflow retrain-and-ship DAG against a local control plane.

1. start a local control plane and a SQLite Airflow home in a temporary directory;
2. `airflow dags test retrain_and_ship`: a good model is trained, built, pushed, deployed as a
   candidate, passes its quality gate on the candidate URL and is promoted;
3. the same DAG with ``bad_model=true``: the candidate fails the quality gate and the rollback
   task discards it; the endpoint never stopped serving the good model, and the run fails;
4. the service logs every row it answers with ``bentoml.monitor``; the demo sends it traffic
   that has drifted from the training data, then runs `airflow dags test closed_loop`: the drift
   check finds the drift (its HTML report is the task's *Drift report* link; with no labels
   sent, the quality check has not enough evidence, so drift is the trigger), the retrain
   branch ships a new model, and the monitoring records are exported to a DuckDB file;
5. print which revision serves and why, then stop everything it started.

Pass ``--keep`` to keep the temporary directory (Airflow logs, server state) for a look.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

if TYPE_CHECKING:
    from bentoship import Client

HERE = Path(__file__).resolve().parent
DAG_ID = "retrain_and_ship"
CLOSED_LOOP = "closed_loop"
DEPLOYMENT = "example-classifier"


def airflow(*args: str, log: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "airflow", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    with log.open("a") as handle:
        handle.write(f"$ airflow {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
    return result


def task_states(airflow_home: Path, dag_id: str = DAG_ID) -> dict[str, str]:
    """Each task's state in the DAG's latest run (and the run's, as ``run``), read from Airflow's
    SQLite metadata database.

    (``airflow tasks states-for-dag-run`` prints the same, at the cost of two more Airflow
    start-ups per run.)
    """
    with contextlib.closing(sqlite3.connect(airflow_home / "airflow.db")) as db:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) "
            "ORDER BY start_date IS NULL, start_date",
            (dag_id, dag_id),
        ).fetchall()
        run = db.execute(
            "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
    return {**{task: str(state) for task, state in rows}, "run": str(run[0]) if run else ""}


def task_xcom(airflow_home: Path, dag_id: str, task_id: str, key: str) -> object:
    """An XCom of the task's latest run (links are XComs named ``_link_<class>``)."""
    with contextlib.closing(sqlite3.connect(airflow_home / "airflow.db")) as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ? "
            "ORDER BY timestamp DESC LIMIT 1",
            (dag_id, task_id, key),
        ).fetchone()
    return json.loads(row[0]) if row and row[0] is not None else None


def send_drifted_traffic(url: str, client: Client, rows: int = 200, requests: int = 4) -> int:
    """POST held-out rows moved by 1.5 standard deviations; return the records logged."""
    import httpx

    sys.path.insert(0, str(HERE / "example_bento"))
    import train

    shifted = train.traffic(rows, shift=1.5)
    for _ in range(requests):
        httpx.post(f"{url}/predict", json={"features": shifted}, timeout=30).raise_for_status()
    held = 0
    for _ in range(60):  # the control plane ingests what the service logged every second
        held = len(client.monitoring_records(DEPLOYMENT, train.MONITOR, limit=100_000))
        if held >= rows * requests:
            break
        time.sleep(0.5)
    return held


def run_pipeline(bad_model: bool, airflow_home: Path, log: Path) -> dict[str, str]:
    conf = json.dumps({"bad_model": bad_model, "deployment_name": DEPLOYMENT})
    airflow("dags", "test", DAG_ID, "-c", conf, log=log)
    return task_states(airflow_home)


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bentoship-demo-"))
    airflow_home = workdir / "airflow"
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(HERE),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
            "BENTOML_HOME": str(workdir / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "BENTOSHIP_HANDOFF_DIR": str(workdir / "handoff"),
        }
    )
    log = workdir / "demo.log"

    from bentoship import Client
    from bentoship.server import LocalControlPlane

    print(f"bentoship demo in {workdir} (full output in {log})")
    with LocalControlPlane(workdir / "plane", readiness_timeout=90) as plane:
        assert plane.connection is not None
        os.environ["AIRFLOW_CONN_BENTOCLOUD_DEFAULT"] = json.dumps(
            {"conn_type": "bentocloud", "host": plane.endpoint, "password": plane.connection.token}
        )
        print(f"  local control plane at {plane.endpoint}")
        print("  airflow db migrate (SQLite)")
        airflow("db", "migrate", log=log).check_returncode()

        print(f"  1. {DAG_ID}: retrain a good model and ship it")
        good = run_pipeline(False, airflow_home, log)
        print(f"     tasks: {good}")
        print(f"  2. {DAG_ID} with bad_model=true: a useless model")
        bad = run_pipeline(True, airflow_home, log)
        print(f"     tasks: {bad}")

        with Client(plane.endpoint, plane.connection.token) as client:
            served = client.get_deployment(DEPLOYMENT)
            print("  3. traffic that has drifted from the training data: 800 rows, every feature")
            print("     moved by 1.5 standard deviations")
            records = send_drifted_traffic(served.url, client)
            print(f"     the control plane holds {records} records of the monitor `classifier`")
            print(f"  4. {CLOSED_LOOP}: check drift -> retrain -> ship -> export")
            warehouse = workdir / "warehouse.duckdb"
            conf = json.dumps({"deployment_name": DEPLOYMENT, "warehouse": str(warehouse)})
            airflow("dags", "test", CLOSED_LOOP, "-c", conf, log=log)
            loop = task_states(airflow_home, CLOSED_LOOP)
            link = task_xcom(airflow_home, CLOSED_LOOP, "check_drift", "_link_BentoDriftReportLink")
            exported = task_xcom(airflow_home, CLOSED_LOOP, "export_monitoring", "return_value")
            report = Path(url2pathname(urlparse(str(link)).path)) if link else None
            found = (
                re.search(r"<h1>Drift report: <span[^>]*>(.*?)</span>", report.read_text())
                if report and report.is_file()
                else None
            )
            print(f"     {found.group(1) if found else 'no drift report'}")
            print(f"     drift report (the task's Drift report link): {link}")
            print(f"     retrain: {loop.get('retrain')}, promote: {loop.get('promote')}")
            print(f"     exported: {exported}")
            dep = client.get_deployment(DEPLOYMENT)
            revisions = client.list_revisions(DEPLOYMENT)
        print("\nsummary")
        for revision in revisions:
            state = "serving" if revision.serving else revision.phase
            print(f"  {revision.name:4} {revision.bento:42} {state}")
        ok = (
            good.get("quality_gate") == "success"
            and good.get("promote") == "success"
            and good.get("run") == "success"
            and bad.get("quality_gate") == "failed"
            and bad.get("rollback") == "success"
            and bad.get("run") == "failed"
            and [r.name for r in revisions] == ["r3", "r2", "r1"]
            and revisions[1].phase == "cancelled"
            and found is not None
            and found.group(1).startswith("drift:")
            and loop.get("retrain") == "success"
            and loop.get("promote") == "success"
            and loop.get("export_monitoring") == "success"
            and loop.get("run") == "success"
            and dep.status == "running"
            and revisions[0].serving
            and isinstance(exported, dict)
            and exported["count"] >= records
        )
        if ok:
            print(
                f"  r2 failed its quality gate and was discarded before it took any live "
                f"traffic; then the traffic drifted, {CLOSED_LOOP} retrained, and {DEPLOYMENT} "
                f"is {dep.status} at {dep.url} on {revisions[0].name}, the retrained model"
            )
        else:
            print(f"  unexpected outcome; see {log}")
    if ok and "--keep" not in sys.argv:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
