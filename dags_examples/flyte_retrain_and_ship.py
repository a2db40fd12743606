"""Retrain the example classifier and ship it with Flyte, verified before it takes traffic.

train -> build -> push -> deploy a candidate -> verify [wait until the candidate is ready ->
smoke test on held-out data through the candidate URL, gated on accuracy -> approval ->
promote]. The endpoint keeps serving the previous model until the promotion, so no live request
reaches a model that fails its gate. The approval waits for a person's decision only with
``require_approval`` (off by default, so the pipeline runs alone): the control plane holds the
candidate with its holdout accuracy as evidence, promotes it when someone approves
(``bentoship approve example-classifier``, the console) and discards it on a rejection or after
``approval_timeout`` seconds. Without it, the approval task asks nobody (``required=False``):
a task that skips, not a ``conditional``, as ``retrain_and_ship`` also runs under the closed
loop's ``conditional`` (flyteorg/flyte#6426, below).

``verify`` takes the deploy step's rollout record and what the quality gate needs (the held-out
rows, their labels and the minimum accuracy). It is made with ``workflow_with_rollback``, whose
``on_failure`` handler takes the same inputs and discards the candidate (or rolls back a rollout
that already took the endpoint). A failure before the deploy (training, build, push) changes
nothing.

``retrain_and_ship_with_connector`` is the same pipeline whose deploy-and-wait runs in the
bentoship connector, holding no pod while the rollout runs.

``closed_loop`` retrains when the traffic has drifted or the model's quality dropped:
[check_drift (the features of the newest ``drift_window`` records the service logged with
``bentoml.monitor("classifier")`` against the training set's; the *Drift report* deck),
send_feedback (the ``labels`` that arrived: a Parquet file with the answers' request ids, the
``X-BentoML-Request-ID`` header, in ``id`` and the true class in ``label``; empty: none) ->
check_quality (the serving revision's accuracy on its labelled predictions against
``min_accuracy`` and the revision it replaced; fewer than ``min_labels`` labels are not enough
evidence; the *Quality report* deck)] -> retrain_trigger (whether to retrain, and which of the
two triggered it: ``drift``, ``quality`` or ``drift and quality``) -> retrain_and_ship when it
says so -> export the monitoring records the warehouse does not hold yet (a DuckDB file here).
The decision is a task, and the branch a single ``conditional`` on its output: flytekit's
local runner mishandles a ``conditional`` inside a sub-workflow under another one
(flyteorg/flyte#6426).

Run it locally against a local control plane (``bentoship server``)::

    pyflyte run dags_examples/flyte_retrain_and_ship.py retrain_and_ship
    pyflyte run dags_examples/flyte_retrain_and_ship.py retrain_and_ship --bad
    pyflyte run dags_examples/flyte_retrain_and_ship.py retrain_and_ship --require_approval
    pyflyte run dags_examples/flyte_retrain_and_ship.py closed_loop [--labels labels.parquet]

The second run trains a deliberately useless model: its quality gate fails, the candidate is
discarded, and the endpoint never stopped serving the previous model. Set
``BENTO_CLOUD_API_ENDPOINT`` and ``BENTO_CLOUD_API_KEY`` (or
pass ``--endpoint`` and mount the Flyte secret ``bentoship/api_key``) to ship to BentoCloud.

On a cluster, the plugin's tasks run in bentoship's image and this file's own tasks in that
image plus scikit-learn (``EXAMPLE_IMAGE``); with ``BENTOSHIP_FLYTE_IMAGE`` set, both run in
that image, which then needs scikit-learn too.
"""

import importlib.util
import json
import tempfile
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import flytekit
from flytekit import ImageSpec, conditional, task, workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from flytekitplugins.bentoship import (
    IMAGE,
    BentoDeploymentTask,
    build_bento,
    check_drift,
    check_quality,
    deploy_bento,
    export_monitoring,
    promote_deployment,
    push_bento,
    request_approval,
    send_feedback,
    smoke_test_deployment,
    wait_for_deployment,
    workflow_with_rollback,
)

PROJECT = Path(__file__).resolve().parent / "example_bento"
DEPLOYMENT = "example-classifier"
CONFIG = {"min_replicas": 1, "labels": {"pipeline": "flyte-retrain-and-ship"}}
QUALITY_THRESHOLD = 0.8
"""Minimum holdout accuracy of the deployed model (as in ``example_bento/train.py``)."""
EXAMPLE_IMAGE = (
    IMAGE.with_packages(["scikit-learn>=1.5"]) if isinstance(IMAGE, ImageSpec) else IMAGE
)
"""This file's own tasks train and evaluate with scikit-learn."""
MONITOR = "classifier"
"""The monitor the service logs each answered row to (``example_bento/service.py``)."""
FEATURES = ["f0", "f1", "f2", "f3"]
WAREHOUSE = str(Path(tempfile.gettempdir()) / "bentoship-closed-loop" / "warehouse.duckdb")


def _training() -> ModuleType:
    """The example project's ``train`` module (numpy and scikit-learn only)."""
    spec = importlib.util.spec_from_file_location("example_bento_train", PROJECT / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Trained(NamedTuple):
    model: FlyteFile
    model_tag: str
    accuracy: float


class Holdout(NamedTuple):
    payload: dict
    labels: str
    """The true labels as JSON text: the smoke test's expected answer."""


class Shipped(NamedTuple):
    rollout: str
    url: str


@task(cache=False, container_image=EXAMPLE_IMAGE)
def train_classifier(bad: bool = False) -> Trained:
    """Train and save the model; hand it on as an exported model file."""
    import bentoml

    train = _training()
    X, y = train.generate_data()
    model = train.train_model(X, y, bad=bad)
    tag = train.save_model(model)
    path = (
        Path(flytekit.current_context().working_directory) / f"{tag.replace(':', '-')}.bentomodel"
    )
    bentoml.models.export_model(tag, str(path))
    accuracy = train.evaluate(model, *train.holdout())
    return Trained(model=FlyteFile(str(path)), model_tag=tag, accuracy=accuracy)


@task(cache=False, container_image=IMAGE)
def bento_project() -> FlyteDirectory:
    """The Bento project that ships with this workflow's code, for the build pod to download."""
    return FlyteDirectory(str(PROJECT))


@task(cache=False, container_image=EXAMPLE_IMAGE)
def holdout_set() -> Holdout:
    """Held-out rows (the smoke test's payload) and their true labels (its expected answer)."""
    train = _training()
    X, y = train.holdout()
    labels = json.dumps([int(label) for label in y])
    return Holdout(payload={"features": X.tolist()}, labels=labels)


@task(cache=False, container_image=IMAGE)
def endpoint_of(rollout: str) -> str:
    """The URL that serves the promoted rollout."""
    return str(json.loads(rollout)["endpoint_url"])


@task(cache=False, container_image=IMAGE)
def gate_evidence(answer: str, expected: str, min_accuracy: float) -> dict:
    """What the approver reads: the candidate's accuracy on the held-out rows (its smoke test's
    answer against their labels) and the gate's minimum."""
    got, labels = json.loads(answer), json.loads(expected)
    right = sum(1 for a, b in zip(got, labels, strict=False) if a == b)
    return {
        "holdout_accuracy": round(right / max(len(labels), 1), 4),
        "min_accuracy": min_accuracy,
        "holdout_rows": len(labels),
    }


@workflow
def package(bad: bool = False, endpoint: str | None = None) -> str:
    """Train, build and push; return the pushed Bento's tag."""
    trained = train_classifier(bad=bad)
    built = build_bento(
        project_dir=bento_project(),
        labels={"model": trained.model_tag},
        models=[trained.model],
    )
    return push_bento(bento=built.bento, endpoint=endpoint)


@workflow_with_rollback
def verify(
    rollout: str,
    payload: dict,
    expected: str,
    min_accuracy: float,
    require_approval: bool = False,
    approval_timeout: float = 86400.0,
    endpoint: str | None = None,
) -> str:
    """Wait for the candidate, gate it on held-out accuracy, [have a person approve it,]
    promote it; discard on failure."""
    ready = wait_for_deployment(rollout=rollout, endpoint=endpoint)
    answer = smoke_test_deployment(
        rollout=rollout,
        api="predict",
        payload=payload,
        expected=expected,
        min_match=min_accuracy,
        endpoint=endpoint,
    )
    decided = request_approval(
        rollout=rollout,
        message="the retrained classifier passed its holdout gate",
        timeout=approval_timeout,
        evidence=gate_evidence(answer=answer, expected=expected, min_accuracy=min_accuracy),
        required=require_approval,
        endpoint=endpoint,
    )
    promoted = promote_deployment(rollout=rollout, endpoint=endpoint)
    ready >> answer
    decided >> promoted
    return promoted


@workflow
def retrain_and_ship(
    bad: bool = False,
    deployment: str = DEPLOYMENT,
    min_accuracy: float = QUALITY_THRESHOLD,
    require_approval: bool = False,
    approval_timeout: float = 86400.0,
    endpoint: str | None = None,
) -> Shipped:
    """Retrain, ship with plain tasks (after a person's approval, with ``require_approval``),
    and roll back when the new model fails its gate."""
    tag = package(bad=bad, endpoint=endpoint)
    rollout = deploy_bento(
        name=deployment, bento=tag, config=CONFIG, candidate=True, endpoint=endpoint
    )
    holdout = holdout_set()
    promoted = verify(
        rollout=rollout,
        payload=holdout.payload,
        expected=holdout.labels,
        min_accuracy=min_accuracy,
        require_approval=require_approval,
        approval_timeout=approval_timeout,
        endpoint=endpoint,
    )
    return Shipped(rollout=promoted, url=endpoint_of(rollout=promoted))


deploy_and_wait_async = BentoDeploymentTask(name="bentoship_example_deploy_and_wait")


@workflow
def retrain_and_ship_with_connector(
    bad: bool = False,
    deployment: str = DEPLOYMENT,
    min_accuracy: float = QUALITY_THRESHOLD,
    require_approval: bool = False,
    approval_timeout: float = 86400.0,
    endpoint: str | None = None,
) -> Shipped:
    """The same pipeline; the connector deploys and waits (and rolls back a failed rollout)."""
    tag = package(bad=bad, endpoint=endpoint)
    deployed = deploy_and_wait_async(
        name=deployment, bento=tag, config=CONFIG, candidate=True, endpoint=endpoint
    )
    holdout = holdout_set()
    promoted = verify(
        rollout=deployed.rollout,
        payload=holdout.payload,
        expected=holdout.labels,
        min_accuracy=min_accuracy,
        require_approval=require_approval,
        approval_timeout=approval_timeout,
        endpoint=endpoint,
    )
    return Shipped(rollout=promoted, url=endpoint_of(rollout=promoted))


class ClosedLoop(NamedTuple):
    drifted: bool
    summary: str
    """The drift check's one line."""
    report: FlyteFile
    quality: str
    """The quality check's verdict: ``passed``, ``failed`` or ``not_enough_evidence``."""
    trigger: str
    """What triggered the retrain: ``drift``, ``quality``, ``drift and quality``, or empty."""
    rollout: str
    """The new model's rollout record, or empty when nothing called for a retrain."""
    exported: int


class Trigger(NamedTuple):
    retrain: bool
    trigger: str
    reason: str


@task(cache=False, container_image=EXAMPLE_IMAGE)
def training_features() -> str:
    """The training set's features by column, as JSON: the drift check's reference."""
    return json.dumps(_training().training_features())


@task(cache=False, container_image=IMAGE)
def traffic_of(deployment: str, limit: int) -> str:
    """The drift check's current side: the newest ``limit`` records the service logged."""
    return json.dumps({"deployment": deployment, "monitor": MONITOR, "limit": limit})


@task(cache=False, container_image=IMAGE)
def retrain_trigger(
    drifted: bool, drift_summary: str, quality_failed: bool, quality_summary: str
) -> Trigger:
    """Whether to retrain, what triggered it (``drift``, ``quality``, ``drift and quality``;
    empty when neither), and why: the summaries of the checks that called for it."""
    causes = []
    if drifted:
        causes.append(("drift", drift_summary))
    if quality_failed:
        causes.append(("quality", quality_summary))
    if not causes:
        print(f"Keep serving: {drift_summary}; {quality_summary}")
        return Trigger(False, "", "")
    trigger = " and ".join(name for name, _ in causes)
    reason = "; ".join(why for _, why in causes)
    print(f"Retraining, triggered by {trigger}: {reason}")
    return Trigger(True, trigger, reason)


@task(cache=False, container_image=IMAGE)
def deployment_of(rollout: str) -> str:
    """The deployment a rollout shipped to (so that the export waits for the rollout)."""
    return str(json.loads(rollout)["name"])


@task(cache=False, container_image=IMAGE)
def keep_serving() -> str:
    """Nothing called for a retrain: no new rollout."""
    return ""


class Shipment(NamedTuple):
    rollout: str
    exported: int


@workflow
def retrain_ship_export(
    deployment: str, warehouse: str, min_accuracy: float, endpoint: str | None = None
) -> Shipment:
    """Drift or a quality drop: retrain and ship, then export the monitoring records."""
    shipped = retrain_and_ship(deployment=deployment, min_accuracy=min_accuracy, endpoint=endpoint)
    exported = export_monitoring(
        name=deployment_of(rollout=shipped.rollout),
        monitor=MONITOR,
        target=warehouse,
        endpoint=endpoint,
    )
    return Shipment(shipped.rollout, exported.records)


@workflow
def keep_serving_export(deployment: str, warehouse: str, endpoint: str | None = None) -> Shipment:
    """Nothing called for a retrain: the deployment keeps serving; export the records."""
    exported = export_monitoring(
        name=deployment, monitor=MONITOR, target=warehouse, endpoint=endpoint
    )
    return Shipment(keep_serving(), exported.records)


@workflow
def closed_loop(
    deployment: str = DEPLOYMENT,
    warehouse: str = WAREHOUSE,
    min_accuracy: float = QUALITY_THRESHOLD,
    drift_window: int = 1000,
    labels: str = "",
    min_labels: int = 200,
    endpoint: str | None = None,
) -> ClosedLoop:
    """Check the traffic for drift and the serving model's quality; retrain and ship when
    either calls for it; export the records."""
    found = check_drift(
        reference=training_features(),
        current=traffic_of(deployment=deployment, limit=drift_window),
        columns=FEATURES,
        endpoint=endpoint,
    )
    sent = send_feedback(name=deployment, monitor=MONITOR, source=labels, endpoint=endpoint)
    quality = check_quality(
        name=deployment,
        monitor=MONITOR,
        min_value=min_accuracy,
        min_labels=min_labels,
        raise_on_failure=False,
        endpoint=endpoint,
    )
    sent >> quality
    why = retrain_trigger(
        drifted=found.drifted,
        drift_summary=found.summary,
        quality_failed=quality.failed,
        quality_summary=quality.summary,
    )
    done = (
        conditional("retrain")
        .if_(why.retrain.is_true())
        .then(
            retrain_ship_export(
                deployment=deployment,
                warehouse=warehouse,
                min_accuracy=min_accuracy,
                endpoint=endpoint,
            )
        )
        .else_()
        .then(keep_serving_export(deployment=deployment, warehouse=warehouse, endpoint=endpoint))
    )
    return ClosedLoop(
        found.drifted,
        found.summary,
        found.report,
        quality.verdict,
        why.trigger,
        done.rollout,
        done.exported,
    )


if __name__ == "__main__":
    print(retrain_and_ship())
