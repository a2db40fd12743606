"""A test DAG (``tests/airflow/test_operators.py``): deploy a held candidate, then gate it on
shadow traffic, the verdict waited for in the triggerer."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from bentoship_airflow.operators.bento import BentoDeployOperator, BentoShadowAnalysisOperator

with DAG(
    dag_id="shadow_gate",
    schedule=None,
    catchup=False,
    params={
        "deployment_name": Param("af-ops", type="string"),
        "bento": Param("echo:v1", type="string"),
        "flip_percent": Param(0, type="integer"),
    },
) as dag:
    deploy = BentoDeployOperator(
        task_id="deploy",
        deployment_name="{{ params.deployment_name }}",
        bento="{{ params.bento }}",
        config={"envs": {"CLASSIFY_FLIP_PERCENT": "{{ params.flip_percent }}"}},
        candidate=True,
        timeout=120,
    )
    shadow = BentoShadowAnalysisOperator(
        task_id="shadow",
        deploy_task_id="deploy",
        min_pairs=200,
        apis=["classify"],
        p99_slack_ms=250,
        timeout=120,
        deferrable=True,
    )
    deploy >> shadow
