"""Whole DAG runs with ``dag.test()`` on SQLite against a real local control plane."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane

from ..core.browser import chromium
from ..quality_labels import labels_of_a_changed_world
from ..traffic import TrafficLoop, send_drifted_traffic
from .conftest import EXAMPLES


def run_dag(
    dag_id: str,
    conf: dict[str, Any],
    file: str = "retrain_and_ship.py",
    xcoms_of: tuple[str, ...] = ("deploy",),
) -> dict[str, Any]:
    """Run an example DAG once; return each task's final state, and the XComs (links too) of
    the tasks ``xcoms_of`` as ``xcom:<task>:<key>``."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(EXAMPLES / file))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.get_dag(dag_id).test(run_conf=conf)
    states: dict[str, Any] = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    states["run"] = str(dag_run.state)
    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id,
            XComModel.run_id == dag_run.run_id,
            XComModel.task_id.in_(xcoms_of),
        )
        states.update(
            {f"xcom:{row.task_id}:{row.key}": XComModel.deserialize_value(row) for row in rows}
        )
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


FEATURES = ["f0", "f1", "f2", "f3"]
MIN_ACCURACY = 0.8
"""The closed loop's default ``min_accuracy``."""
LOOP_XCOMS = ("check_drift", "send_labels", "check_quality", "retrain")
LOOP_RETRAINED = {
    "training_features": "success",
    "check_drift": "success",
    "check_quality": "success",
    "decide": "success",
    "retrain": "success",
    "keep_serving": "skipped",
    "train_model": "success",
    "holdout_payload": "success",
    "build_and_push": "success",
    "deploy": "success",
    "quality_gate": "success",
    "shadow_wanted": "success",
    "shadow_gate": "skipped",  # shadow_min_pairs 0: promoted after the quality gate
    "approval_wanted": "success",
    "approval": "skipped",  # require_approval off: nobody is asked
    "promote": "success",
    "rollback": "skipped",
    "export_monitoring": "success",
    "run": "success",
}
"""The closed loop's tasks when it retrained and shipped (but ``send_labels``)."""


def states_of(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not k.startswith("xcom:")}


APPROVED_RUN = {
    "train_model": "success",
    "holdout_payload": "success",
    "build_and_push": "success",
    "deploy": "success",
    "quality_gate": "success",
    "shadow_wanted": "success",
    "shadow_gate": "skipped",  # a required approval takes the shadow gate's place
    "approval_wanted": "success",
    "approval": "success",
    "promote": "success",  # the approval promoted the candidate already: nothing left to do
    "rollback": "skipped",
    "run": "success",
}
"""The example DAG's tasks when a person approved its candidate."""
APPROVER_SAYS = "quality gate passed on the holdout; ship it"


class TriggerWatch(logging.Handler):
    """Watches ``dag.test()`` run ``task_id``'s trigger in line (what the triggerer does with a
    deferred task, which then holds no worker): ``waiting`` is set once it runs, and ``began``
    and ``ended`` keep when it began and ended."""

    def __init__(self, task_id: str) -> None:
        super().__init__(logging.INFO)
        self.task_id = task_id
        self.current = ""
        self.waiting = threading.Event()
        self.began = self.ended = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if message.startswith("[DAG TEST] running task") and record.args:
            self.current = str(getattr(record.args[0], "task_id", ""))
        elif self.current != self.task_id:
            return
        elif message == "[DAG TEST] running trigger in line":
            self.began = record.created
            self.waiting.set()
        elif message == "[DAG TEST] Trigger completed":
            self.ended = record.created


class ConsoleApprover(threading.Thread):
    """A person who, once the approval task waits in the triggerer, signs in to the console in
    headless Chromium and approves the pending candidate. If anything fails, ``error`` keeps it
    and the approval is rejected through the API, so the run ends."""

    def __init__(self, plane: LocalControlPlane, deployment: str, watch: TriggerWatch) -> None:
        super().__init__(daemon=True)
        assert plane.connection is not None
        self.endpoint, self.token = plane.connection.endpoint, plane.connection.token
        self.deployment, self.watch = deployment, watch
        self.run_over = threading.Event()
        self.error: BaseException | None = None
        self.approval, self.evidence, self.notice = "", "", ""
        self.clicked = 0.0

    def run(self) -> None:
        with Client(self.endpoint, self.token) as client:
            try:
                self.approve(client)
            except BaseException as exc:
                self.error = exc
                for asked in client.approvals(self.deployment):
                    if asked["state"] == "pending":
                        client.reject(self.deployment, asked["id"], "the browser walk failed")

    def approve(self, client: Client) -> None:
        while not self.watch.waiting.wait(0.2):
            if self.run_over.is_set():
                raise AssertionError("the approval task never waited in the triggerer")
        (asked,) = [a for a in client.approvals(self.deployment) if a["state"] == "pending"]
        self.approval = asked["id"]
        page_url = f"{self.endpoint}/deployments/{self.deployment}"
        with chromium() as browser:
            page = browser.page
            page.goto(page_url)
            page.fill("input[name=token]", self.token)
            page.click("form[action='/login'] button[type=submit]")
            page.wait_for_url(page_url)
            assert page.get_attribute("#approval", "data-approval") == self.approval
            self.evidence = page.inner_text("#approval-evidence dd[data-key=run]")
            page.fill("#approval-comment", APPROVER_SAYS)
            browser.shot("airflow-approval-01-pending")
            self.clicked = time.time()
            with page.expect_navigation():
                page.click("#approval-approve")
            self.notice = page.inner_text(".notice")
            browser.shot("airflow-approval-02-approved")
            assert browser.dialogs == []


def run_approved_in_the_console(
    plane: LocalControlPlane, deployment: str, conf: dict[str, Any]
) -> tuple[dict[str, Any], ConsoleApprover]:
    """Run the deferrable example DAG with ``require_approval``, while a person approves its
    candidate in the console once the approval task waits in the triggerer."""
    watch = TriggerWatch("approval")
    dag_log = logging.getLogger("airflow.sdk.definitions.dag")
    dag_log.addHandler(watch)
    person = ConsoleApprover(plane, deployment, watch)
    person.start()
    try:
        run = run_dag(
            "retrain_and_ship_deferrable",
            {**conf, "deployment_name": deployment, "require_approval": True},
            xcoms_of=("deploy", "approval"),
        )
    finally:
        person.run_over.set()
        person.join(120)
        dag_log.removeHandler(watch)
    if person.error is not None:
        raise AssertionError(f"the person in the console failed; the run: {run}") from person.error
    # the person approved while the task waited in the triggerer, which held it until then
    assert watch.began < person.clicked < watch.ended
    return run, person


def exported_records(warehouse: Path) -> tuple[int, int]:
    """The records the closed loop exported to its warehouse, and how many distinct."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as db:
        exported = db.execute("SELECT count(*), count(DISTINCT seq) FROM monitor_classifier")
        total, distinct = exported.fetchone() or (0, 0)
    return int(total), int(distinct)


@pytest.mark.usefixtures("airflow_db")
def test_good_run_bad_run_rolled_back_then_drift_and_quality_drop_retrain(
    bentocloud_connection: LocalControlPlane, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The deferrable DAG, approved by a person in the console, then the closed loop on the
    same deployment once its traffic has drifted and labels show its quality dropped; `make
    demo` (run by CI after the tests) runs the plain one and the drift loop with `airflow dags
    test`."""
    dag_id, deployment = "retrain_and_ship_deferrable", "af-example-deferred"
    task_logs(capfd)
    good, person = run_approved_in_the_console(
        bentocloud_connection, deployment, {"bad_model": False}
    )
    logs = task_logs(capfd)
    assert states_of(good) == APPROVED_RUN, logs[-3000:]
    assert f"is pending; deferring until someone decides (`bentoship approve {deployment}`" in logs
    candidate = good["xcom:deploy:rollout"]["revision"]
    decision = good["xcom:approval:return_value"]
    assert (decision["id"], decision["revision"]) == (person.approval, candidate)
    assert (decision["state"], decision["decided_by"]) == ("approved", "server token")
    assert decision["comment"] == APPROVER_SAYS
    assert decision["evidence"] == {"run": person.evidence, "quality_gate": "passed"}
    assert person.notice == f"Approved {candidate}: it is promoted and serves."
    # Every operator with extra links records them: resolving the links when a task ends
    # reads no missing XCom (the deploy and the quality gate both declare them).
    assert "Smoke test of predict passed" in logs, "the task logs were not captured"
    assert "XCom not found" not in logs
    assert "http://127.0.0.1:" in good["xcom:deploy:_link_BentoEndpointLink"]
    assert f"/deployments/{deployment}" in good["xcom:deploy:_link_BentoDeploymentLink"]
    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        first = client.get_deployment(deployment)
        assert first.status == "running"
        assert (first.serving_revision, first.candidate_revision) == (candidate, None)
        assert serving_accuracy(first.url) >= 0.8
        events = [event.message for event in client.events(deployment)]
        approved = f"approval {person.approval} of {candidate} approved by server token"
        assert f"{approved}: {APPROVER_SAYS}" in events
        assert f"candidate {candidate} promoted" in events

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
        assert bad["approval"] == "upstream_failed"
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
        labels, accuracy = labels_of_a_changed_world(client, deployment, tmp_path, _train())
        warehouse = tmp_path / "warehouse.duckdb"
        loop = run_dag(
            "closed_loop",
            {"deployment_name": deployment, "warehouse": str(warehouse), "labels": str(labels)},
            file="closed_loop.py",
            xcoms_of=LOOP_XCOMS,
        )
        logs = task_logs(capfd)
        retrained = client.get_deployment(deployment)
    # The traffic drifted, and the labels of r1's newest answers (their features like the
    # training data) show its accuracy fell: both checks fail, and both trigger the retrain.
    # (Each alone triggers on its own in tests/flyte/test_example_workflow.py.)
    assert states_of(loop) == LOOP_RETRAINED | {"send_labels": "success"}
    drift = "drift: 4 of 4 columns drifted (100%; threshold 50%): f0, f1, f2, f3"
    assert drift in logs
    report = loop["xcom:check_drift:_link_BentoDriftReportLink"]
    assert report.startswith("file:///") and report.endswith(".html")
    page = Path(url2pathname(urlparse(report).path)).read_text()
    assert 'id="column-f0"' in page and "4 of 4 columns drifted" in page
    sent = loop["xcom:send_labels:return_value"]
    assert (sent["sent"], sent["stored"], sent["pending"]) == (200, 200, 0)
    checked = loop["xcom:check_quality:return_value"]
    assert (checked["verdict"], checked["serving"], checked["labels"]) == ("failed", "r1", 200)
    assert checked["value"] == pytest.approx(accuracy) and accuracy < MIN_ACCURACY
    assert f"is worse than min_value {MIN_ACCURACY}" in checked["reason"]
    link = loop["xcom:check_quality:_link_BentoQualityReportLink"]
    assert link.startswith("file:///") and link.endswith(".html")
    page = Path(url2pathname(urlparse(link).path)).read_text()
    assert "Confusion matrix" in page and "r1" in page
    why = loop["xcom:retrain:return_value"]
    assert why["trigger"] == "drift and quality"
    columns = "drift: 4 of 4 columns drifted (f0, f1, f2, f3)"
    assert why["reason"] == f"{columns}; quality: {checked['reason']}"
    assert "Retraining, triggered by drift and quality: drift: 4 of 4 columns drifted" in logs
    assert "XCom not found" not in logs  # the report links were recorded
    assert retrained.serving_revision == "r3" and retrained.status == "running"
    assert retrained.bento != first.bento
    total, distinct = exported_records(warehouse)
    # everything logged before the loop began (the labelled answers too), and the quality
    # gate's rows of the new model
    assert total == distinct >= before_loop + 400, (total, distinct, before_loop)


def test_closed_loop_says_what_triggered_the_retrain() -> None:
    """The retrain's trigger from the two reports (no process)."""
    import sys

    sys.path.insert(0, str(EXAMPLES))
    from closed_loop import retrain_trigger

    drift = {"drifted": True, "drifted_columns": ["f0", "f2"], "compared_columns": FEATURES}
    calm = {"drifted": False, "drifted_columns": [], "compared_columns": FEATURES}
    dropped = {"verdict": "failed", "reason": "accuracy 0.6 over 300 labels is worse"}
    for verdict in ("passed", "not_enough_evidence"):
        assert retrain_trigger(calm, {"verdict": verdict, "reason": "-"}) is None
    assert retrain_trigger(drift, {"verdict": "passed"}) == {
        "trigger": "drift",
        "reason": "drift: 2 of 4 columns drifted (f0, f2)",
    }
    assert retrain_trigger(calm, dropped) == {
        "trigger": "quality",
        "reason": "quality: accuracy 0.6 over 300 labels is worse",
    }
    both = retrain_trigger(drift, dropped)
    assert both is not None and both["trigger"] == "drift and quality"
    assert (
        both["reason"].startswith("drift: 2 of 4") and "; quality: accuracy 0.6" in both["reason"]
    )
