"""A test DAG (``tests/airflow/test_operators.py``): deploy a held candidate, then wait for a
person's approval in the triggerer (approved, rejected, or nobody deciding within
``approval_timeout`` seconds)."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from bentoship_airflow.operators.bento import BentoApprovalOperator, BentoDeployOperator

with DAG(
    dag_id="approval_gate",
    schedule=None,
    catchup=False,
    params={
        "deployment_name": Param("af-ops", type="string"),
        "bento": Param("echo:v1", type="string"),
        "approval_timeout": Param(120, type="integer", minimum=1),
    },
) as dag:
    deploy = BentoDeployOperator(
        task_id="deploy",
        deployment_name="{{ params.deployment_name }}",
        bento="{{ params.bento }}",
        config={"envs": {"RUN": "approval"}},
        candidate=True,
        timeout=120,
    )
    approval = BentoApprovalOperator(
        task_id="approval",
        deploy_task_id="deploy",
        message="ship {{ params.bento }}?",
        evidence={"run": "{{ run_id }}"},
        timeout="{{ params.approval_timeout }}",
        deferrable=True,
    )
    deploy >> approval
