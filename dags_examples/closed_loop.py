"""Close the loop: retrain when the traffic has drifted from the training data, ship, export.

check_drift -> retrain [train -> build and push -> deploy a candidate -> quality gate ->
promote] | keep_serving -> export_monitoring.

The example service logs each row it answers (features ``f0``..``f3`` and the prediction) with
``bentoml.monitor("classifier")``; the local control plane collects those records. The drift
check compares the features of the newest records with the training set's (KS and PSI per
column); its HTML report is linked from the task (*Drift report*) and summed up in its log.
When the traffic has drifted, the retrain branch ships a new model exactly as
``retrain_and_ship`` does (verified on the candidate URL, promoted, rolled back on failure);
otherwise the deployment keeps serving. Either way, the monitoring records that the warehouse
(a DuckDB file here; a Parquet folder or any SQLAlchemy URL work too) does not hold yet are
exported, each once.
"""

from __future__ import annotations

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TriggerRule, task
from retrain_and_ship import HANDOFF, _train_module, retrain_and_ship_tasks, ship_params

from bentoship_airflow.operators.monitoring import (
    BentoDriftCheckOperator,
    BentoMonitoringExportOperator,
)

DAG_ID = "closed_loop"
MONITOR = "classifier"
"""As in ``example_bento/service.py`` (kept here: parsing the DAG imports neither numpy nor
scikit-learn)."""
FEATURES = ["f0", "f1", "f2", "f3"]
WAREHOUSE = HANDOFF / DAG_ID / "warehouse.duckdb"

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    params={
        **ship_params(),
        "warehouse": Param(str(WAREHOUSE), type="string", description="the export's target"),
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
        current={"deployment": "{{ params.deployment_name }}", "monitor": MONITOR},
        columns=FEATURES,
        drift_branch="retrain",
        no_drift_branch="keep_serving",
    )
    retrain, keep_serving = EmptyOperator(task_id="retrain"), EmptyOperator(task_id="keep_serving")
    first, promote = retrain_and_ship_tasks(DAG_ID, deferrable=False)
    export = BentoMonitoringExportOperator(
        task_id="export_monitoring",
        deployment_name="{{ params.deployment_name }}",
        monitor=MONITOR,
        target="{{ params.warehouse }}",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )
    check >> [retrain, keep_serving]
    retrain >> first
    [promote, keep_serving] >> export
