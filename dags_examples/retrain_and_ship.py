"""Retrain the example classifier and ship it with bentoship, verified before it takes traffic.

generate data -> train -> build and push -> deploy a candidate (wait until it is ready) ->
quality gate (smoke test on held-out data, through the candidate URL) -> [shadow gate] ->
promote. On any failure the rollback task discards the candidate: the endpoint served the
previous model all along. The run then ends failed (the promote task is upstream_failed), and
the rollback task succeeded.

With the ``shadow_min_pairs`` param above 0, the shadow gate runs after the quality gate: the
control plane mirrors the endpoint's live requests to the candidate until that many pairs of
answers are in, then promotes the candidate if its predictions agree with the serving model's,
or discards it (the run then fails). It needs live traffic to the endpoint, and the local
control plane. With 0 (the default) the shadow gate is skipped and the candidate is promoted
after the quality gate.

The ``bad_model`` param trains a deliberately useless model, which fails the quality gate.
Set the ``bentocloud_default`` connection (or ``BENTO_CLOUD_API_ENDPOINT``/``_KEY``) to choose
where it ships. ``retrain_and_ship_deferrable`` is the same pipeline whose deploy task waits in
the triggerer instead of holding a worker slot.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, task

from bentoship_airflow.operators.bento import (
    BentoApprovalOperator,
    BentoBuildOperator,
    BentoDeployOperator,
    BentoPromoteOperator,
    BentoRollbackOperator,
    BentoShadowAnalysisOperator,
    BentoSmokeTestOperator,
)

PROJECT = Path(__file__).resolve().parent / "example_bento"
HANDOFF = Path(os.environ.get("BENTOSHIP_HANDOFF_DIR", tempfile.gettempdir())) / "bentoship-handoff"
DEPLOYMENT = os.environ.get("BENTOSHIP_EXAMPLE_DEPLOYMENT", "example-classifier")


def _train_module():  # type: ignore[no-untyped-def]
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    import train

    return train


def meets_quality_gate(predictions: list[int]) -> bool:
    """The smoke test's check: holdout accuracy of the served model reaches the threshold."""
    train = _train_module()
    _, labels = train.holdout()
    accuracy = sum(int(p == t) for p, t in zip(predictions, labels, strict=True)) / len(labels)
    print(f"holdout accuracy of the deployment: {accuracy:.2f} (gate {train.QUALITY_THRESHOLD})")
    return accuracy >= train.QUALITY_THRESHOLD


def retrain_and_ship_tasks(pipeline: str, *, deferrable: bool) -> tuple[list[Any], Any]:
    """Add train -> build and push -> deploy -> quality gate -> [shadow gate] -> [approval] ->
    promote (and rollback) to the DAG being defined; return the first tasks and the promote
    task.

    The DAG needs the params of :func:`ship_params`.
    """

    @task
    def train_model(params: dict | None = None, run_id: str | None = None) -> str:
        """Train on generated data and export the model file for the build task."""
        import bentoml

        train = _train_module()
        X, y = train.generate_data()
        bad = bool((params or {}).get("bad_model"))
        tag = train.save_model(train.train_model(X, y, bad=bad))
        target = HANDOFF / pipeline / str(run_id).replace(":", "_") / "model.bentomodel"
        target.parent.mkdir(parents=True, exist_ok=True)
        bentoml.models.export_model(tag, str(target))
        return str(target)

    @task
    def holdout_payload() -> dict:
        """The quality gate's request body: held-out features."""
        features, _ = _train_module().holdout()
        return {"features": features.tolist()}

    trained, payload = train_model(), holdout_payload()
    build = BentoBuildOperator(
        task_id="build_and_push",
        project_dir=str(PROJECT),
        model_files=[trained],
        labels={"pipeline": pipeline},
        push=True,
    )
    deploy = BentoDeployOperator(
        task_id="deploy",
        deployment_name="{{ params.deployment_name }}",
        bento=build.output,
        config={"min_replicas": 1, "max_replicas": 1, "labels": {"pipeline": pipeline}},
        candidate=True,
        timeout=300,
        deferrable=deferrable,
    )
    quality_gate = BentoSmokeTestOperator(
        task_id="quality_gate",
        rollout=deploy.output,
        api="predict",
        payload=payload,
        check=meets_quality_gate,
    )

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def shadow_wanted(params: dict | None = None) -> bool:
        """Whether to run the shadow gate: only the task right after is skipped when not. A
        required approval takes its place (each gate promotes; the person decides last), as
        in the KFP example."""
        given = params or {}
        return int(given.get("shadow_min_pairs") or 0) > 0 and not given.get("require_approval")

    shadow_gate = BentoShadowAnalysisOperator(
        task_id="shadow_gate",
        deploy_task_id="deploy",
        min_pairs="{{ params.shadow_min_pairs }}",
        apis=["predict"],
        deferrable=deferrable,
    )

    @task.short_circuit(
        ignore_downstream_trigger_rules=False,
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )
    def approval_wanted(params: dict | None = None) -> bool:
        """Whether a person must approve: only the task right after is skipped when not."""
        return bool((params or {}).get("require_approval"))

    approval = BentoApprovalOperator(
        task_id="approval",
        deploy_task_id="deploy",
        message="{{ dag.dag_id }} run {{ run_id }}: the candidate passed its gates",
        evidence={"run": "{{ run_id }}", "quality_gate": "passed"},
        timeout="{{ params.approval_timeout }}",
        deferrable=True,
    )
    # A skipped gate lets promote run after the one before; a failed one fails it.
    promote = BentoPromoteOperator(
        task_id="promote",
        deploy_task_id="deploy",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )
    rollback = BentoRollbackOperator(
        task_id="rollback", deploy_task_id="deploy", trigger_rule=TriggerRule.ONE_FAILED
    )
    # promote stays a leaf: when verification fails it is upstream_failed, so the run fails
    # while the rollback task, which discards the candidate, succeeds. A shadow gate that
    # rejects the candidate has the control plane discard it: no rollback is needed.
    wanted = approval_wanted()
    quality_gate >> shadow_wanted() >> shadow_gate >> wanted
    quality_gate >> wanted >> approval >> promote
    quality_gate >> promote
    [deploy, quality_gate] >> rollback
    return [trained.operator, payload.operator], promote


def ship_params() -> dict[str, Param]:
    """The params the ship tasks read."""
    return {
        "bad_model": Param(False, type="boolean", description="train a useless model"),
        "deployment_name": Param(DEPLOYMENT, type="string"),
        "shadow_min_pairs": Param(
            0,
            type="integer",
            minimum=0,
            description="gate the candidate on this many pairs of shadow answers (0: no gate; "
            "require_approval replaces this gate)",
        ),
        "require_approval": Param(
            False, type="boolean", description="wait for a person to approve the candidate"
        ),
        "approval_timeout": Param(
            86400, type="integer", minimum=1, description="seconds a person has to decide"
        ),
    }


def retrain_and_ship_dag(dag_id: str, *, deferrable: bool) -> DAG:
    """The pipeline; ``deferrable`` makes the deploy task wait in the triggerer."""
    with DAG(
        dag_id=dag_id,
        schedule=None,
        catchup=False,
        params=ship_params(),
        tags=["bentoship", "example"],
    ) as dag:
        retrain_and_ship_tasks(dag_id, deferrable=deferrable)
    return dag


retrain_and_ship = retrain_and_ship_dag("retrain_and_ship", deferrable=False)
retrain_and_ship_deferrable = retrain_and_ship_dag("retrain_and_ship_deferrable", deferrable=True)
