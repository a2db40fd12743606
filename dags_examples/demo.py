"""`make demo`: the Airflow retrain-and-ship DAG against a local control plane.

1. start a local control plane and a SQLite Airflow home in a temporary directory;
2. `airflow dags test retrain_and_ship`: a good model is trained, built, pushed, deployed as a
   candidate, passes its quality gate on the candidate URL and is promoted;
3. the same DAG with ``bad_model=true``: the candidate fails the quality gate and the rollback
   task discards it; the endpoint never stopped serving the good model, and the run fails;
4. print which revision serves and why, then stop everything it started.

Pass ``--keep`` to keep the temporary directory (Airflow logs, server state) for a look.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAG_ID = "retrain_and_ship"
DEPLOYMENT = "example-classifier"


def airflow(*args: str, log: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "airflow", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    with log.open("a") as handle:
        handle.write(f"$ airflow {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
    return result


def task_states(airflow_home: Path) -> dict[str, str]:
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
            (DAG_ID, DAG_ID),
        ).fetchall()
        run = db.execute(
            "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
    return {**{task: str(state) for task, state in rows}, "run": str(run[0]) if run else ""}


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
            and revisions[0].phase == "cancelled"
            and dep.status == "running"
            and len(revisions) == 2
            and revisions[-1].serving
        )
        if ok:
            print(
                f"  {DEPLOYMENT} is {dep.status} at {dep.url} on {revisions[-1].name}, the good "
                f"model: candidate {revisions[0].name} failed its quality gate and was discarded "
                "before it took any live traffic"
            )
        else:
            print(f"  unexpected outcome; see {log}")
    if ok and "--keep" not in sys.argv:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
