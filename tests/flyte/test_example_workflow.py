"""dags_examples/flyte_retrain_and_ship.py, run locally against a real local control plane.

The endpoint comes from the workflow's input and the token from the Flyte secret
``bentoship/api_key`` (as ``_FSEC_BENTOSHIP_API_KEY``), as on a cluster.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.tools.translator import get_serializable

from bentoship import Rollout
from bentoship.refs import find_revision
from bentoship.server import LocalControlPlane
from flytekitplugins.bentoship import IMAGE

from ..quality_labels import labels_of_a_changed_world
from ..traffic import TrafficLoop, send_drifted_traffic
from .conftest import client_for

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"
DEPLOYMENT = "flyte-classifier"


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    """The example module (importing it starts nothing: compiling needs no server)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLES))
        module = importlib.import_module("flyte_retrain_and_ship")
        yield module
    sys.modules.pop("flyte_retrain_and_ship", None)


@pytest.fixture(scope="module")
def flyte_secret(shared_plane: LocalControlPlane) -> Iterator[None]:
    """The token as the Flyte secret ``bentoship/api_key``, for the module's pipeline runs."""
    assert shared_plane.connection is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("_FSEC_BENTOSHIP_API_KEY", shared_plane.connection.token)
        yield


def run(pipeline: Any, **inputs: Any) -> Any:
    """Run an example pipeline in this process."""
    return pipeline(**inputs)


@pytest.fixture(scope="module")
def good_run(
    example: ModuleType, shared_plane: LocalControlPlane, flyte_secret: None
) -> tuple[Rollout, str]:
    """Ship a good model once: the deployment is created, and its first revision serves."""
    assert shared_plane.connection is not None
    shipped = run(
        example.retrain_and_ship, deployment=DEPLOYMENT, endpoint=shared_plane.connection.endpoint
    )
    return Rollout.from_json(shipped.rollout), shipped.url


@pytest.fixture
def holdout(example: ModuleType) -> tuple[list[list[float]], list[int]]:
    train = example._training()
    X, y = train.holdout()
    return X.tolist(), [int(v) for v in y]


def accuracy_at(url: str, holdout: tuple[list[list[float]], list[int]]) -> float:
    features, labels = holdout
    predictions = httpx.post(f"{url}/predict", json={"features": features}, timeout=60).json()
    return sum(int(p == t) for p, t in zip(predictions, labels, strict=True)) / len(labels)


def test_happy_path_serves_the_new_revision(
    good_run: tuple[Rollout, str],
    shared_plane: LocalControlPlane,
    example: ModuleType,
    holdout: Any,
) -> None:
    rollout, url = good_run
    with client_for(shared_plane) as api:
        dep = api.get_deployment(DEPLOYMENT)
        revisions = api.list_revisions(DEPLOYMENT)
    assert rollout.created and rollout.revision and not rollout.candidate
    assert dep.status == "running"
    assert dep.serving_revision == rollout.revision == dep.target_revision
    assert dep.bento == rollout.bento and url == dep.url == rollout.endpoint_url
    first = find_revision(revisions, rollout.revision)
    assert first is not None, revisions
    assert first.serving and first.bento == rollout.bento
    info = httpx.post(f"{url}/info", json={}, timeout=30).json()
    assert info["model"].startswith("example_classifier:")
    assert accuracy_at(url, holdout) >= example._training().QUALITY_THRESHOLD


def test_bad_model_is_discarded_unseen_by_on_failure(
    good_run: tuple[Rollout, str],
    shared_plane: LocalControlPlane,
    example: ModuleType,
    holdout: Any,
) -> None:
    assert shared_plane.connection is not None
    good, url = good_run
    # The connector flavour of the same pipeline is compiled below; its deploy-and-wait runs
    # against a real server in tests/flyte/test_connector.py.
    pipeline = example.retrain_and_ship
    features, _ = holdout
    with client_for(shared_plane) as api:
        before = {r.uid for r in api.list_revisions(DEPLOYMENT)}
        with TrafficLoop(
            f"{url}/predict", {"features": features[:5]}, clients=2, pause=0.1
        ) as live:
            live.wait_for(5)
            with pytest.raises(Exception, match=r"matches the expected items, below 0\.8"):
                run(
                    pipeline,
                    bad=True,
                    deployment=DEPLOYMENT,
                    endpoint=shared_plane.connection.endpoint,
                )
        dep = api.get_deployment(DEPLOYMENT)
        revisions = api.list_revisions(DEPLOYMENT)

    assert live.by_revision() == {good.revision: len(live.answers)} and not live.failures
    assert {a.status for a in live.answers} == {200}
    added = [r for r in revisions if r.uid not in before]
    assert len(added) == 1, revisions
    bad = added[0]
    assert bad.bento != good.bento and not bad.serving and bad.phase == "cancelled"
    assert dep.status == "running"
    assert dep.serving_revision == good.revision == dep.target_revision
    assert dep.bento == good.bento
    assert accuracy_at(url, holdout) >= example._training().QUALITY_THRESHOLD


def test_closed_loop_retrains_on_drift_under_pyflyte_run(
    good_run: tuple[Rollout, str],
    shared_plane: LocalControlPlane,
    example: ModuleType,
    flyte_secret: None,
    tmp_path: Path,
) -> None:
    """``pyflyte run … closed_loop`` once the traffic has drifted: the report is a deck, a new
    model serves, and the monitoring records are exported."""
    assert shared_plane.connection is not None
    sandbox, warehouse = tmp_path / "sandbox", tmp_path / "warehouse.duckdb"
    sandbox.mkdir()
    with client_for(shared_plane) as api:
        before = api.get_deployment(DEPLOYMENT)
        logged = send_drifted_traffic(api, DEPLOYMENT, example._training().traffic(200, 1.5))
        ran = subprocess.run(
            [
                str(Path(sys.executable).parent / "pyflyte"),
                "run",
                str(EXAMPLES / "flyte_retrain_and_ship.py"),
                "closed_loop",
                "--deployment",
                DEPLOYMENT,
                "--warehouse",
                str(warehouse),
                "--endpoint",
                shared_plane.connection.endpoint,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TMPDIR": str(sandbox)},  # flytekit's local sandbox
        )
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        after = api.get_deployment(DEPLOYMENT)
    assert after.serving_revision != before.serving_revision and after.bento != before.bento
    # In one process, flytekit hands a task's decks on to the tasks after it: the check that ran
    # second shows both reports.
    decks = [p.read_text() for p in sandbox.rglob("deck.html")]
    drift_decks = [d for d in decks if "Drift report" in d]
    assert drift_decks and all('id="column-f0"' in d for d in drift_decks)
    assert all("4 of 4 columns drifted" in d for d in drift_decks)
    quality_decks = [d for d in decks if "Quality report" in d]
    assert quality_decks and all("not_enough_evidence" in d for d in quality_decks)  # no labels
    assert "Retraining, triggered by drift: drift: 4 of 4 columns drifted" in ran.stdout
    total, distinct = exported(warehouse)
    assert total == distinct >= logged + 200, (total, distinct, logged)


def exported(warehouse: Path) -> tuple[int, int]:
    """The records the closed loop exported to its warehouse, and how many distinct."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as db:
        row = db.execute("SELECT count(*), count(DISTINCT seq) FROM monitor_classifier")
        total, distinct = row.fetchone() or (0, 0)
    return int(total), int(distinct)


def test_closed_loop_retrains_on_a_quality_drop_without_drift(
    good_run: tuple[Rollout, str],
    shared_plane: LocalControlPlane,
    example: ModuleType,
    flyte_secret: None,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The closed loop, run in this process, once labels show that the serving model's accuracy
    fell while its inputs did not drift (the drift check looks at the newest 200 records: the
    labelled answers, like the training data): it retrains, and says quality triggered it."""
    from flytekit import FlyteContextManager

    assert shared_plane.connection is not None
    warehouse = tmp_path / "warehouse.duckdb"
    with client_for(shared_plane) as api:
        before = api.get_deployment(DEPLOYMENT)
        labels, accuracy = labels_of_a_changed_world(api, DEPLOYMENT, tmp_path, example._training())
        started = time.time()
        capfd.readouterr()
        loop = run(
            example.closed_loop,
            deployment=DEPLOYMENT,
            warehouse=str(warehouse),
            labels=str(labels),
            drift_window=200,
            endpoint=shared_plane.connection.endpoint,
        )
        logs = capfd.readouterr().out
        after = api.get_deployment(DEPLOYMENT)
        figures = api.quality(DEPLOYMENT, example.MONITOR)
    assert loop.drifted is False and loop.summary.startswith("no drift: 0 of 4 columns drifted")
    assert (loop.quality, loop.trigger) == ("failed", "quality")
    assert f"Retraining, triggered by quality: quality of {DEPLOYMENT}" in logs
    assert f"is worse than min_value {example.QUALITY_THRESHOLD}" in logs
    shipped = Rollout.from_json(loop.rollout)
    assert after.serving_revision == shipped.revision != before.serving_revision
    assert after.bento != before.bento and after.status == "running"
    judged = {r["revision"]: r for r in figures["revisions"]}[before.serving_revision]
    assert judged["labelled"] == 200 and judged["accuracy"] == pytest.approx(accuracy)
    assert accuracy < example.QUALITY_THRESHOLD
    sandbox = Path(FlyteContextManager.current_context().file_access.local_sandbox_dir)
    decks = [p.read_text() for p in sandbox.rglob("deck.html") if p.stat().st_mtime >= started]
    quality_decks = [d for d in decks if "Quality report" in d]
    assert quality_decks and all("Confusion matrix" in d for d in quality_decks)
    assert shared_plane.connection.token not in "".join(decks)
    assert loop.exported > 0 and exported(warehouse)[0] == exported(warehouse)[1]


def test_example_workflows_compile_for_a_cluster(example: ModuleType) -> None:
    settings = SerializationSettings(ImageConfig.auto_default_image())
    for pipeline in (
        example.retrain_and_ship,
        example.retrain_and_ship_with_connector,
        example.closed_loop,
    ):
        entities: OrderedDict[Any, Any] = OrderedDict()
        spec = get_serializable(entities, settings, pipeline)
        assert spec.template.nodes
    verify = get_serializable(OrderedDict(), settings, example.verify)
    failure = verify.template.failure_node
    assert failure is not None
    assert failure.task_node.reference_id.name == f"{example.verify.name}.rollback_deployment"
    # The handler takes every input of verify, beyond what rollback needs (payload, expected...).
    assert set(example.verify.python_interface.inputs) == {
        "rollout",
        "payload",
        "expected",
        "min_accuracy",
        "require_approval",
        "approval_timeout",
        "endpoint",
    }
    # the approval is optional with no conditional (verify runs under the closed loop's one,
    # flyteorg/flyte#6426): the task asks nobody unless required, which is off by default
    assert all(node.branch_node is None for node in verify.template.nodes)
    approval = [n for n in verify.template.nodes if n.metadata.name.endswith("request_approval")]
    assert len(approval) == 1
    defaults = example.retrain_and_ship.python_interface.default_inputs_as_kwargs
    assert defaults["require_approval"] is False
    assert {binding.var for binding in failure.inputs} == {
        *example.verify.python_interface.inputs,
        "err",
    }
    handler = get_serializable(OrderedDict(), settings, example.verify.on_failure).template
    assert handler.container.image == IMAGE.image_name()
    assert handler.container.args[-4:] == [
        "workflow-module",
        "flyte_retrain_and_ship",
        "workflow",
        "verify",
    ]
    train = get_serializable(OrderedDict(), settings, example.train_classifier).template
    assert train.container.image == example.EXAMPLE_IMAGE.image_name() != IMAGE.image_name()
    connector_task = get_serializable(OrderedDict(), settings, example.deploy_and_wait_async)
    assert connector_task.template.type == "bentoship_deployment"
    assert connector_task.template.custom == {"timeout": 600.0, "rollback_on_failure": True}
