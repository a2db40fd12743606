"""Gate a retrain on data drift: compare the service's traffic with the training data.

check_drift -> retrain (when the traffic drifted) | keep_serving (when it did not). The check
writes an HTML report, linked from the task (*Drift report*) and summed up in its log.

``reference`` and ``current`` are Parquet paths, ``{"url": ..., "query": ...}`` (a SQL query on
a SQLAlchemy URL), or ``{"deployment": ..., "monitor": ...}``: what a deployment's service
logged with ``bentoml.monitor``, read from the local control plane named by the
``bentocloud_default`` connection.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from bentoship_airflow.operators.monitoring import BentoDriftCheckOperator

with DAG(
    dag_id="drift_gate",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "reference": Param("", description="the training data (see the DAG's doc)"),
        "current": Param(
            {"deployment": "example-classifier", "monitor": "iris_classifier"},
            description="the traffic to compare with the training data",
        ),
        "report_path": Param("", description="where to write the HTML report (optional)"),
    },
    doc_md=__doc__,
    tags=["bentoship", "monitoring"],
) as dag:
    check = BentoDriftCheckOperator(
        task_id="check_drift",
        reference="{{ params.reference }}",
        current="{{ params.current }}",
        report_path="{{ params.report_path }}",
        share=0.1,
        drift_branch="retrain",
        no_drift_branch="keep_serving",
    )
    check >> [EmptyOperator(task_id="retrain"), EmptyOperator(task_id="keep_serving")]
