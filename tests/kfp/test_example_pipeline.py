"""The example retrain-and-ship pipeline, run with kfp.local against a real local control plane."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import duckdb
import httpx
import pytest
from kfp import compiler
from kfp.components import load_component_from_text

from bentoship import Client, Rollout
from bentoship.server import LocalControlPlane

from ..quality_labels import labels_of_a_changed_world
from ..traffic import TrafficLoop, send_drifted_traffic
from .helpers import executor_labels, task_output, task_ran, with_task_env

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
PROJECT = EXAMPLES / "example_bento"


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_module("kfp_retrain_and_ship", EXAMPLES / "kfp_retrain_and_ship.py")


@pytest.fixture(scope="module")
def train() -> ModuleType:
    return load_module("example_bento_train", PROJECT / "train.py")


def served_accuracy(url: str, train: ModuleType) -> float:
    """Holdout accuracy of whatever the deployment's stable endpoint serves now."""
    features, labels = train.holdout()
    answer = httpx.post(f"{url}/predict", json={"features": features.tolist()}, timeout=60).json()
    return sum(int(a == b) for a, b in zip(answer, labels, strict=True)) / len(labels)


def exported(warehouse: Path) -> tuple[int, int]:
    """The records the closed loop exported to its warehouse, and how many distinct."""
    with duckdb.connect(str(warehouse), read_only=True) as db:
        row = db.execute("SELECT count(*), count(DISTINCT seq) FROM monitor_classifier")
        total, distinct = row.fetchone() or (0, 0)
    return int(total), int(distinct)


def test_good_model_ships_bad_model_is_discarded_unseen_then_drift_and_quality_retrain(
    start_control_plane: Callable[..., LocalControlPlane],
    kfp_local: Callable[[str], Path],
    server_env: Callable[[LocalControlPlane], None],
    example: ModuleType,
    train: ModuleType,
    tmp_path: Path,
) -> None:
    plane = start_control_plane(readiness_timeout=180)
    server_env(plane)  # the endpoint and token reach the tasks as environment variables
    name = example.DEPLOYMENT

    # 1. The happy path, as a user runs the pipeline function with kfp.local: the first
    # revision is deployed as a candidate, verified on the candidate URL, then promoted.
    good_root = kfp_local("good")
    good = Rollout.from_json(example.retrain_and_ship(project_dir=str(PROJECT)).output)
    assert good.created and good.candidate and good.revision == "r1"
    assert good.candidate_url and good.candidate_url != good.endpoint_url
    promoted = Rollout.from_json(task_output(good_root, "promote-deployment"))
    assert not promoted.candidate and not promoted.candidate_url
    assert (promoted.revision, promoted.bento) == ("r1", good.bento)
    assert promoted.url == promoted.endpoint_url == good.endpoint_url
    assert task_output(good_root, "train-model") == pytest.approx(0.89, abs=0.005)
    assert task_output(good_root, "rollback-deployment") == (
        "no rollback: exit-handler-1 succeeded"
    )
    with Client() as client:
        dep = client.get_deployment(name)
        assert dep.status == "running"
        assert (dep.serving_revision, dep.bento) == ("r1", good.bento)
        assert dep.candidate_revision is None
        assert served_accuracy(dep.url, train) == pytest.approx(0.89, abs=0.005)

    # 2. The bad model, from the compiled pipeline YAML, each task with its own BENTOML_HOME
    # (as in separate containers with no shared disk), while live clients call the endpoint.
    compiled = tmp_path / "kfp_retrain_and_ship.yaml"
    compiler.Compiler().compile(example.retrain_and_ship, str(compiled))
    homes = tmp_path / "homes"
    isolated = with_task_env(compiled.read_text(), homes)
    assert len(executor_labels(isolated)) == 12  # with the approval branch's two
    pipeline = load_component_from_text(isolated)

    bad_root = kfp_local("bad")
    features, _ = train.holdout()
    live_payload = {"features": features.tolist()[:5]}
    with TrafficLoop(f"{dep.url}/predict", live_payload, clients=2, pause=0.15) as live:
        live.wait_for(5)
        with pytest.raises(RuntimeError, match="smoke-test-deployment"):
            pipeline(project_dir=str(PROJECT), bad_model=True)
    assert task_output(bad_root, "train-model") < example.QUALITY_THRESHOLD
    bad = Rollout.from_json(task_output(bad_root, "deploy-bento", "rollout"))
    assert bad.candidate and bad.revision == "r2" and bad.bento != good.bento
    assert task_ran(bad_root, "wait-for-deployment")  # the bad candidate did come up
    assert not task_ran(bad_root, "promote-deployment")
    assert task_output(bad_root, "rollback-deployment") == (
        f"discarded candidate r2: {name} serves {good.bento} (running)"
    )
    # no live request reached the bad model: the endpoint served r1 throughout
    assert live.by_revision() == {"r1": len(live.answers)} and not live.failures
    assert {a.status for a in live.answers} == {200}

    with Client() as client:
        dep = client.get_deployment(name)
        assert dep.status == "running"
        assert dep.serving_revision == dep.target_revision == "r1"
        assert dep.bento == good.bento and dep.candidate_revision is None
        newest, *older = client.list_revisions(name)
        assert (newest.name, newest.bento) == ("r2", bad.bento)
        assert not newest.serving and newest.phase == "cancelled"  # discarded, never served
        assert [r.name for r in older] == ["r1"]
        assert served_accuracy(dep.url, train) == pytest.approx(0.89, abs=0.005)

    # 3. The closed loop, once the traffic has drifted and labels of r1's newest answers show
    # that its accuracy fell: both checks fail, the retrain says both triggered it, ships a new
    # model, and the records are exported. (Drift alone, with no labels, and a quality drop
    # without drift each trigger on their own in tests/flyte/test_example_workflow.py.)
    with Client() as client:
        logged = send_drifted_traffic(client, name, train.traffic(200, shift=1.5))
        labels, accuracy = labels_of_a_changed_world(client, name, tmp_path, train)
    loop_root = kfp_local("loop")
    warehouse = tmp_path / "warehouse.duckdb"
    trigger = example.closed_loop(
        project_dir=str(PROJECT), warehouse=str(warehouse), labels=str(labels)
    ).output
    assert trigger == "drift and quality"
    drift = task_output(loop_root, "check-drift", "summary")
    assert drift == (
        "drift: 4 of 4 columns drifted (100%; threshold 50%): f0, f1, f2, f3; "
        "compared: f0, f1, f2, f3"
    )
    (report,) = [p for p in loop_root.rglob("report") if p.parent.name == "check-drift"]
    assert 'id="column-f0"' in report.read_text()
    sent = [task_output(loop_root, "send-feedback", k) for k in ("sent", "stored", "pending")]
    assert sent == [200, 200, 0]
    checked = json.loads(task_output(loop_root, "check-quality", "report_json"))
    assert (checked["verdict"], checked["serving"], checked["labels"]) == ("failed", "r1", 200)
    assert checked["value"] == pytest.approx(accuracy) and accuracy < example.QUALITY_THRESHOLD
    assert f"is worse than min_value {example.QUALITY_THRESHOLD}" in checked["reason"]
    assert task_output(loop_root, "check-quality", "failed") is True
    (page,) = [p for p in loop_root.rglob("report") if p.parent.name == "check-quality"]
    assert "Confusion matrix" in page.read_text() and "r1" in page.read_text()
    summary = task_output(loop_root, "check-quality", "summary")
    assert summary.startswith(f"quality of {name} r1: failed: accuracy")
    assert task_output(loop_root, "retrain-trigger", "reason") == f"{drift}; {summary}"
    assert task_output(loop_root, "promote-deployment")
    with Client() as client:
        dep = client.get_deployment(name)
    assert dep.serving_revision == "r3" and dep.status == "running"
    assert dep.bento not in (good.bento, bad.bento)
    total, distinct = exported(warehouse)
    assert total == distinct >= logged + 400, (total, distinct, logged)

    model_dir = Path("models") / "example_classifier"
    assert (homes / "exec-train-model" / model_dir).is_dir()
    assert (homes / "exec-build-bento" / model_dir).is_dir()  # imported from the Model artifact
    assert (homes / "exec-push-bento" / "bentos" / "example_classifier").is_dir()
    assert not (homes / "exec-deploy-bento" / "models").exists()
    assert not (homes / "exec-deploy-bento" / "bentos").exists()


def test_closed_loop_says_what_triggered_the_retrain(example: ModuleType) -> None:
    """The retrain's trigger from the two checks' outputs (no process)."""
    decide = example.retrain_trigger.python_func
    drift, calm = "drift: 2 of 4 columns drifted", "no drift: 0 of 4 columns drifted"
    dropped = "quality of svc r3: failed: accuracy 0.6 over 300 labels"
    assert decide(False, calm, False, "quality of svc r3: passed") == (False, "", "")
    assert decide(True, drift, False, "-") == (True, "drift", drift)
    assert decide(False, calm, True, dropped) == (True, "quality", dropped)
    both = decide(True, drift, True, dropped)
    assert both == (True, "drift and quality", f"{drift}; {dropped}")


def test_closed_loop_compiles_with_one_branch_on_the_trigger(
    example: ModuleType, tmp_path: Path
) -> None:
    import yaml

    path = tmp_path / "closed_loop.yaml"
    compiler.Compiler().compile(example.closed_loop, str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["check-quality"]["dependentTasks"] == ["send-feedback"]
    quality_inputs = tasks["check-quality"]["inputs"]["parameters"]
    assert quality_inputs["raise_on_failure"] == {"runtimeValue": {"constant": False}}
    assert quality_inputs["min_value"] == {"componentInputParameter": "min_accuracy"}
    assert tasks["send-feedback"]["inputs"]["parameters"]["source"] == {
        "componentInputParameter": "labels"
    }
    assert set(tasks["retrain-trigger"]["dependentTasks"]) == {"check-drift", "check-quality"}
    branches = spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = {b["triggerPolicy"]["condition"] for b in branches.values()}
    retrain = "inputs.parameter_values['pipelinechannel--retrain-trigger-retrain'] == true"
    assert conditions == {retrain, f"!({retrain})"}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {"exec-send-feedback", "exec-check-quality", "exec-check-drift"} <= set(executors)
