"""Retrain the example classifier and ship it with Kubeflow Pipelines v2, verified first.

train -> build -> push -> deploy a candidate -> [wait until the candidate is ready -> smoke test
on held-out data through the candidate URL, gated on accuracy -> promote; or with
``require_approval`` a person's approval, which promotes; or with ``shadow_min_pairs`` > 0 a
shadow gate that compares its answers to mirrored live requests and promotes], where the
bracketed part runs inside a ``dsl.ExitHandler`` whose exit task discards the candidate when the
part failed (it reads ``dsl.PipelineTaskFinalStatus``). The endpoint keeps serving the previous
model until the promotion, so no live request reaches a model that fails its gate. The shadow
gate needs live traffic to the endpoint and a model already serving; it is off
(``shadow_min_pairs=0``) by default. The approval is off by default too, so the pipeline runs
alone: with ``require_approval`` the control plane holds the candidate, with its holdout
accuracy as evidence, for ``approval_timeout`` seconds, promotes it when someone approves
(``bentoship approve example-classifier``, the console) and discards it otherwise. Both the
approval and the shadow gate promote, so only one of them can decide: the person, when both
are asked for. Against plain BentoCloud, which has no candidates, the deploy is an ordinary
one, the smoke test runs on the endpoint, and the exit task rolls back to the revision that
served before (an approval needs the local control plane).

KFP forbids an exit task to depend on another task, yet the rollback needs the deploy task's
rollout record (which revision is the candidate, which one served before). So wait, smoke test,
promote and rollback sit in a small sub-pipeline, ``verify_rollout``, which gets the rollout as a
pipeline input: its exit task reads that input, not a task. A failure before the deploy changes
nothing on the server and needs no rollback.

The ``bad_model`` parameter trains a deliberately useless model: it deploys and answers on the
candidate URL, fails the quality gate (holdout accuracy about 0.21 against 0.8) and is discarded.

``closed_loop`` retrains when the traffic has drifted or the model's quality dropped:
[check_drift (the features of the newest ``drift_window`` records the service logged with
``bentoml.monitor("classifier")`` against the training set's), send_feedback (the ``labels``
that arrived: a Parquet file with the answers' request ids, the ``X-BentoML-Request-ID``
header, in ``id`` and the true class in ``label``; empty: none) -> check_quality (the serving
revision's accuracy on its labelled predictions against ``min_accuracy`` and the revision it
replaced; fewer than ``min_labels`` labels are not enough evidence)] -> retrain_trigger (says
which of the two triggered the retrain: ``drift``, ``quality`` or ``drift and quality``) ->
``dsl.If`` retrain: retrain_and_ship -> export the monitoring records the warehouse does not
hold yet (a DuckDB file here), in either branch. Both reports are HTML artifacts the KFP UI
shows.

In a cluster, every task that talks to the server reads ``BENTO_CLOUD_API_ENDPOINT`` and
``BENTO_CLOUD_API_KEY`` from the Kubernetes secret ``bentoship-api`` (keys ``endpoint`` and
``token``). See docs/kfp.md.

    python dags_examples/kfp_retrain_and_ship.py    # compile to kfp_retrain_and_ship.yaml
    python dags_examples/kfp_retrain_and_ship.py --run-local [--bad-model] [--require-approval]
    python dags_examples/kfp_retrain_and_ship.py --run-local --closed-loop [--labels labels.parquet]
"""

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Model, Output

from bentoship_kfp import DEFAULT_IMAGE
from bentoship_kfp.components import (
    analyze_shadow,
    build_bento,
    check_drift,
    check_quality,
    deploy_bento,
    export_monitoring,
    promote_deployment,
    push_bento,
    request_approval,
    rollback_deployment,
    send_feedback,
    smoke_test_deployment,
    wait_for_deployment,
)

HERE = Path(__file__).resolve().parent
LOCAL_PROJECT = HERE / "example_bento"
PROJECT_IN_IMAGE = "/opt/bentoship/example_bento"
"""Where the example image has the example Bento project (see docs/kfp.md)."""
_BASE_REPOSITORY, _BASE_TAG = DEFAULT_IMAGE.rsplit(":", 1)
EXAMPLE_IMAGE = f"{_BASE_REPOSITORY}-example:{_BASE_TAG}"
"""The bentoship-kfp base image plus scikit-learn and the example project: training and
``bentoml build`` import the project's code, so they run here. Tagged as the base image is
(``bentoship-kfp-example:<version>-python3.11``); ``kfp_components/Dockerfile.example``."""
DEPLOYMENT = "example-classifier"
API_SECRET = "bentoship-api"
SECRET_TO_ENV = {"endpoint": "BENTO_CLOUD_API_ENDPOINT", "token": "BENTO_CLOUD_API_KEY"}
QUALITY_THRESHOLD = 0.8
MONITOR = "classifier"
"""The monitor the service logs each answered row to (``example_bento/service.py``)."""
FEATURES = ["f0", "f1", "f2", "f3"]
WAREHOUSE = "/tmp/bentoship-closed-loop/warehouse.duckdb"


@dsl.component(base_image=EXAMPLE_IMAGE, install_kfp_package=False)
def train_model(project_dir: str, bad: bool, model: Output[Model]) -> float:
    """Train the classifier (``bad``: on shuffled labels) and output it as an exported model.

    Returns:
        The model's holdout accuracy.
    """
    import os
    import sys

    import bentoml

    sys.path.insert(0, project_dir)
    import train

    X, y = train.generate_data()
    trained = train.train_model(X, y, bad=bad)
    accuracy = train.evaluate(trained, *train.holdout())
    tag = train.save_model(trained)
    bentoml.models.export_model(tag, model.path + ".bentomodel")
    os.replace(model.path + ".bentomodel", model.path)
    model.metadata.update({"tag": tag, "accuracy": accuracy})
    print(f"trained {tag}: holdout accuracy {accuracy:.2f}")
    return accuracy


@dsl.component(base_image=EXAMPLE_IMAGE, install_kfp_package=False)
def holdout_set(project_dir: str) -> NamedTuple("Holdout", [("payload", dict), ("labels", str)]):
    """The quality gate's request body (held-out features) and expected answer (their labels)."""
    import json
    import sys

    sys.path.insert(0, project_dir)
    import train

    X, y = train.holdout()
    return ({"features": X.tolist()}, json.dumps([int(label) for label in y]))


@dsl.component(base_image=EXAMPLE_IMAGE, install_kfp_package=False)
def training_features(project_dir: str) -> str:
    """The training set's features by column, as JSON: the drift check's reference."""
    import json
    import sys

    sys.path.insert(0, project_dir)
    import train

    return json.dumps(train.training_features())


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def traffic_of(deployment_name: str, monitor: str, limit: int) -> str:
    """The drift check's current side: the newest ``limit`` records the service logged."""
    import json

    return json.dumps({"deployment": deployment_name, "monitor": monitor, "limit": limit})


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def retrain_trigger(
    drifted: bool, drift_summary: str, quality_failed: bool, quality_summary: str
) -> NamedTuple("Trigger", [("retrain", bool), ("trigger", str), ("reason", str)]):
    """Whether to retrain, what triggered it (``drift``, ``quality``, ``drift and quality``;
    empty when neither), and why: the summaries of the checks that called for it."""
    causes = []
    if drifted:
        causes.append(("drift", drift_summary))
    if quality_failed:
        causes.append(("quality", quality_summary))
    if not causes:
        print(f"Keep serving: {drift_summary}; {quality_summary}")
        return (False, "", "")
    trigger = " and ".join(name for name, _ in causes)
    reason = "; ".join(why for _, why in causes)
    print(f"Retraining, triggered by {trigger}: {reason}")
    return (True, trigger, reason)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate_evidence(answer: str, expected: str, min_accuracy: float) -> dict:
    """What the approver reads: the candidate's accuracy on the held-out rows (the smoke test's
    answer against their labels) and the gate's minimum."""
    import json

    got, labels = json.loads(answer), json.loads(expected)
    right = sum(1 for a, b in zip(got, labels, strict=False) if a == b)
    return {
        "holdout_accuracy": round(right / max(len(labels), 1), 4),
        "min_accuracy": min_accuracy,
        "holdout_rows": len(labels),
    }


def _server_secret(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """In a cluster, the task reads the endpoint and token from the ``bentoship-api`` secret."""
    return kubernetes.use_secret_as_env(
        task, secret_name=API_SECRET, secret_key_to_env=SECRET_TO_ENV
    )


@dsl.pipeline(name="verify-rollout")
def verify_rollout(
    rollout: str,
    payload: dict,
    expected: str,
    min_accuracy: float,
    wait_timeout: int,
    shadow_min_pairs: int,
    require_approval: bool,
    approval_timeout: int,
) -> None:
    """Wait for the candidate, gate it on held-out accuracy, promote it (after a person's
    approval with ``require_approval``, else after a shadow gate when ``shadow_min_pairs`` > 0);
    discard it on failure."""
    undo = _server_secret(rollback_deployment(rollout=rollout, timeout=wait_timeout))
    with dsl.ExitHandler(undo, name="verify-and-promote"):
        ready = _server_secret(wait_for_deployment(rollout=rollout, timeout=wait_timeout))
        gate = smoke_test_deployment(
            rollout=rollout,
            api="predict",
            payload=payload,
            expected=expected,
            min_match=min_accuracy,
        ).after(ready)  # the rollout record holds the candidate URL: no server lookup
        with dsl.If(require_approval == True, name="approval-gate"):  # noqa: E712
            evidence = gate_evidence(
                answer=gate.output, expected=expected, min_accuracy=min_accuracy
            )
            decided = request_approval(  # approved, the control plane promotes the candidate
                rollout=rollout,
                message="the retrained classifier passed its holdout gate",
                timeout=approval_timeout,
                evidence=evidence.output,
            )
            _server_secret(decided)
        with dsl.Elif(shadow_min_pairs > 0, name="shadow-gate"):
            shadow = analyze_shadow(
                rollout=rollout, min_pairs=shadow_min_pairs, apis=["predict"], timeout=wait_timeout
            )
            _server_secret(shadow).after(gate)
        with dsl.Else(name="promote-at-once"):
            _server_secret(promote_deployment(rollout=rollout, timeout=wait_timeout)).after(gate)


@dsl.pipeline(name="kfp-retrain-and-ship")
def retrain_and_ship(
    deployment_name: str = DEPLOYMENT,
    bad_model: bool = False,
    project_dir: str = PROJECT_IN_IMAGE,
    min_accuracy: float = QUALITY_THRESHOLD,
    wait_timeout: int = 600,
    shadow_min_pairs: int = 0,
    require_approval: bool = False,
    approval_timeout: int = 86400,
) -> str:
    """Retrain, build, push and deploy a candidate; verify and promote it, or discard it.

    With ``require_approval``, the candidate is promoted only once a person approves it within
    ``approval_timeout`` seconds. Else, with ``shadow_min_pairs`` > 0, only after a shadow gate:
    that many of the endpoint's live ``predict`` requests, mirrored to it, must get the answers
    the serving model gives (it needs live traffic, and a model already serving).

    Returns:
        The deploy task's rollout record (JSON): the candidate's (a pipeline cannot return an
        output made inside an ``ExitHandler``; the promote task outputs the promoted record).
    """
    trained = train_model(project_dir=project_dir, bad=bad_model)
    holdout = holdout_set(project_dir=project_dir)
    built = build_bento(
        project_dir=project_dir,
        model=trained.outputs["model"],
        labels={"pipeline": "kfp-retrain-and-ship"},
    ).set_container_image(EXAMPLE_IMAGE)
    pushed = _server_secret(push_bento(bento=built.outputs["bento"]))
    deployed = _server_secret(
        deploy_bento(
            deployment_name=deployment_name,
            bento_tag=pushed.output,
            config={"min_replicas": 1, "labels": {"pipeline": "kfp-retrain-and-ship"}},
            candidate=True,
        )
    )
    verify_rollout(
        rollout=deployed.outputs["rollout"],
        payload=holdout.outputs["payload"],
        expected=holdout.outputs["labels"],
        min_accuracy=min_accuracy,
        wait_timeout=wait_timeout,
        shadow_min_pairs=shadow_min_pairs,
        require_approval=require_approval,
        approval_timeout=approval_timeout,
    )
    return deployed.outputs["rollout"]


@dsl.pipeline(name="kfp-closed-loop")
def closed_loop(
    deployment_name: str = DEPLOYMENT,
    project_dir: str = PROJECT_IN_IMAGE,
    warehouse: str = WAREHOUSE,
    min_accuracy: float = QUALITY_THRESHOLD,
    wait_timeout: int = 600,
    drift_window: int = 1000,
    labels: str = "",
    min_labels: int = 200,
) -> str:
    """Check the traffic for drift and the serving model's quality; retrain and ship when
    either calls for it; export the records.

    Returns:
        What triggered the retrain: ``drift``, ``quality``, ``drift and quality``, or empty.
    """
    reference = training_features(project_dir=project_dir)
    current = traffic_of(deployment_name=deployment_name, monitor=MONITOR, limit=drift_window)
    drift = _server_secret(
        check_drift(reference=reference.output, current=current.output, columns=FEATURES)
    )
    sent = _server_secret(
        send_feedback(deployment_name=deployment_name, monitor=MONITOR, source=labels)
    )
    quality = _server_secret(
        check_quality(
            deployment_name=deployment_name,
            monitor=MONITOR,
            min_value=min_accuracy,
            min_labels=min_labels,
            raise_on_failure=False,
        )
    ).after(sent)
    why = retrain_trigger(
        drifted=drift.outputs["drifted"],
        drift_summary=drift.outputs["summary"],
        quality_failed=quality.outputs["failed"],
        quality_summary=quality.outputs["summary"],
    )
    with dsl.If(why.outputs["retrain"] == True, name="retrain"):  # noqa: E712
        shipped = retrain_and_ship(
            deployment_name=deployment_name,
            project_dir=project_dir,
            min_accuracy=min_accuracy,
            wait_timeout=wait_timeout,
        )
        _server_secret(
            export_monitoring(deployment_name=deployment_name, monitor=MONITOR, target=warehouse)
        ).after(shipped)
    with dsl.Else(name="keep-serving"):
        _server_secret(
            export_monitoring(deployment_name=deployment_name, monitor=MONITOR, target=warehouse)
        )
    return why.outputs["trigger"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="kfp_retrain_and_ship.yaml", help="pipeline YAML")
    parser.add_argument(
        "--run-local",
        action="store_true",
        help="run with kfp.local in this environment instead of compiling; the server comes "
        "from BENTO_CLOUD_API_ENDPOINT/_KEY or the local control plane (`bentoship server`)",
    )
    parser.add_argument("--bad-model", action="store_true", help="train a useless model")
    parser.add_argument(
        "--require-approval",
        action="store_true",
        help="wait for a person to approve the candidate (`bentoship approve`, the console)",
    )
    parser.add_argument(
        "--approval-timeout", type=int, default=86400, help="seconds a person has to decide"
    )
    parser.add_argument(
        "--closed-loop",
        action="store_true",
        help="the closed loop instead (drift or a quality drop -> retrain)",
    )
    parser.add_argument(
        "--labels", default="", help="with --closed-loop: labels that arrived (Parquet: id, label)"
    )
    args = parser.parse_args(argv)
    if not args.run_local:
        compiler.Compiler().compile(
            closed_loop if args.closed_loop else retrain_and_ship, args.output
        )
        print(f"wrote {args.output}")
        return 0

    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False))
    if args.closed_loop:
        trigger = closed_loop(project_dir=str(LOCAL_PROJECT), labels=args.labels).output
        print(f"retrained, triggered by {trigger}" if trigger else "kept serving")
        return 0
    try:
        rollout = retrain_and_ship(
            bad_model=args.bad_model,
            project_dir=str(LOCAL_PROJECT),
            require_approval=args.require_approval,
            approval_timeout=args.approval_timeout,
        )
    except RuntimeError as exc:
        print(f"{exc}\n(after the deploy, the exit task discarded the candidate or rolled back)")
        return 1
    print(f"shipped: {rollout.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
