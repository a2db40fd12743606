"""Close the loop: retrain when the traffic has drifted from the training data, or when the
labels show that the model's quality dropped; ship, export.

[check_drift, send_labels -> check_quality] -> decide -> retrain [train -> build and push ->
deploy a candidate -> quality gate -> promote] | keep_serving -> export_monitoring.

The example service logs each row it answers (features ``f0``..``f3`` and the prediction) with
``bentoml.monitor("classifier")``; the local control plane collects those records, each with
the id of its request (the ``X-BentoML-Request-ID`` header of the answer).

- The drift check compares the features of the newest ``drift_window`` records with the
  training set's (KS and PSI per column); its HTML report is linked from the task (*Drift
  report*) and summed up in its log.
- The labels that arrived since (the ``labels`` param: a Parquet file or folder with the
  request id in ``id`` and the true class in ``label``; blank: none) are sent to the control
  plane, which joins them to the predictions. The quality check then holds the serving
  revision's accuracy on its labelled predictions against ``min_accuracy`` and against the
  revision it replaced (a drop of more than 0.05, its 95% interval clear of it); fewer than
  ``min_labels`` labels are not enough evidence. Its report is the task's *Quality report*.
- ``decide`` retrains when either check calls for it; the ``retrain`` task says which one
  triggered it (``drift``, ``quality``, or ``drift and quality``), in its log and its return
  value. The retrain branch ships a new model exactly as ``retrain_and_ship`` does (verified on
  the candidate URL, promoted, rolled back on failure); otherwise the deployment keeps serving.
- Either way, the monitoring records that the warehouse (a DuckDB file here; a Parquet folder
  or any SQLAlchemy URL work too) does not hold yet are exported, each once.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TriggerRule, task
from retrain_and_ship import HANDOFF, _train_module, retrain_and_ship_tasks, ship_params

from bentoship_airflow.operators.monitoring import (
    BentoDriftCheckOperator,
    BentoMonitoringExportOperator,
    BentoQualityCheckOperator,
    BentoSendFeedbackOperator,
)

DAG_ID = "closed_loop"
MONITOR = "classifier"
"""As in ``example_bento/service.py`` (kept here: parsing the DAG imports neither numpy nor
scikit-learn)."""
FEATURES = ["f0", "f1", "f2", "f3"]
MIN_ACCURACY = 0.8
"""As ``train.QUALITY_THRESHOLD``: the holdout accuracy a model must reach to be shipped."""
WAREHOUSE = HANDOFF / DAG_ID / "warehouse.duckdb"


def retrain_trigger(drift: dict[str, Any], quality: dict[str, Any]) -> dict[str, str] | None:
    """What calls for a retrain, from the drift report and the quality report (their dicts):
    ``{"trigger": "drift" | "quality" | "drift and quality", "reason": ...}``, or None."""
    causes = []
    if drift.get("drifted"):
        drifted = list(drift.get("drifted_columns") or ())
        compared = len(drift.get("compared_columns") or ())
        columns = f"{len(drifted)} of {compared} columns drifted ({', '.join(drifted)})"
        causes.append(("drift", columns))
    if quality.get("verdict") == "failed":
        causes.append(("quality", str(quality.get("reason"))))
    if not causes:
        return None
    return {
        "trigger": " and ".join(name for name, _ in causes),
        "reason": "; ".join(f"{name}: {why}" for name, why in causes),
    }


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    params={
        **ship_params(),
        "warehouse": Param(str(WAREHOUSE), type="string", description="the export's target"),
        "drift_window": Param(
            1000, type="integer", minimum=1, description="the newest records to check for drift"
        ),
        "labels": Param(
            "",
            type="string",
            description="labels that arrived: a Parquet file or folder (id, label); blank: none",
        ),
        "min_accuracy": Param(MIN_ACCURACY, type="number", description="the quality floor"),
        "min_labels": Param(
            200, type="integer", minimum=1, description="labels the quality check needs"
        ),
    },
    doc_md=__doc__,
    tags=["bentoship", "example", "monitoring"],
) as dag:

    @task
    def training_features() -> dict:
        """The training set's features by column: the drift check's reference."""
        return _train_module().training_features()

    check = BentoDriftCheckOperator(
        task_id="check_drift",
        reference=training_features(),
        current={
            "deployment": "{{ params.deployment_name }}",
            "monitor": MONITOR,
            "limit": "{{ params.drift_window }}",
        },
        columns=FEATURES,
        fail_on_drift=False,
    )
    labels = BentoSendFeedbackOperator(
        task_id="send_labels",
        deployment_name="{{ params.deployment_name }}",
        monitor=MONITOR,
        source="{{ params.labels }}",
    )
    quality = BentoQualityCheckOperator(
        task_id="check_quality",
        deployment_name="{{ params.deployment_name }}",
        monitor=MONITOR,
        min_value="{{ params.min_accuracy }}",
        min_labels="{{ params.min_labels }}",
        raise_on_failure=False,
        trigger_rule=TriggerRule.NONE_FAILED,  # after the labels, or none (skipped)
    )

    @task.branch
    def decide(drift: dict[str, Any], quality: dict[str, Any]) -> str:
        """``retrain`` when the traffic drifted or the quality dropped, else ``keep_serving``."""
        why = retrain_trigger(drift, quality)
        if why is None:
            print(f"Keep serving: no drift, and quality {quality.get('verdict')}")
            return "keep_serving"
        print(f"Retrain: triggered by {why['trigger']}")
        return "retrain"

    @task
    def retrain(drift: dict[str, Any], quality: dict[str, Any]) -> dict[str, str] | None:
        """Say what triggered the retrain; the ship tasks follow."""
        why = retrain_trigger(drift, quality)
        if why is not None:
            print(f"Retraining, triggered by {why['trigger']}: {why['reason']}")
        return why

    keep_serving = EmptyOperator(task_id="keep_serving")
    first, promote = retrain_and_ship_tasks(DAG_ID, deferrable=False)
    export = BentoMonitoringExportOperator(
        task_id="export_monitoring",
        deployment_name="{{ params.deployment_name }}",
        monitor=MONITOR,
        target="{{ params.warehouse }}",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )
    labels >> quality
    retraining = retrain(check.output, quality.output)
    decide(check.output, quality.output) >> [retraining, keep_serving]
    retraining >> first
    [promote, keep_serving] >> export
