"""The quality operators' arguments and the quality report link, at unit level (no process);
the closed loop in ``test_dags.py`` runs them against a real control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_provider import TaskInstanceStandIn


def test_quality_check_reads_templated_numbers_into_its_policy() -> None:
    from bentoship import QualityPolicy
    from bentoship_airflow.operators.monitoring import BentoQualityCheckOperator

    rendered = BentoQualityCheckOperator(
        task_id="q",
        deployment_name="svc",
        monitor="calls",
        min_value="0.8",
        max_drop="0.02",
        baseline="0.9",
        min_labels="150",
        since="1d",
        score_field="",
    )
    assert rendered.policy() == QualityPolicy(
        monitor="calls", min_value=0.8, max_drop=0.02, baseline=0.9, min_labels=150, since="1d"
    )
    blank = BentoQualityCheckOperator(
        task_id="q",
        deployment_name="svc",
        monitor="calls",
        min_value="None",  # a null param, rendered
        baseline="training",
        training_value="0.93",
        metric="f1",
    )
    assert blank.policy() == QualityPolicy(
        monitor="calls", metric="f1", baseline="training", training_value=0.93
    )
    assert {"min_value", "max_drop", "baseline", "min_labels"} <= set(blank.template_fields)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"min_labels": "many"}, "min_labels a whole number"),
        ({"baseline": "best_ever"}, "baseline previous_revision, training or a number"),
        ({"metric": "speed"}, "q: quality metric 'speed'"),
        ({"baseline": "training"}, "q: quality baseline training needs training_value"),
    ],
)
def test_a_bad_policy_fails_before_connecting_and_records_no_report(
    arguments: dict[str, Any], problem: str
) -> None:
    from airflow.sdk.exceptions import AirflowException

    from bentoship_airflow.links.quality import REPORT_XCOM_KEY
    from bentoship_airflow.operators.monitoring import BentoQualityCheckOperator

    op = BentoQualityCheckOperator(task_id="q", deployment_name="svc", monitor="calls", **arguments)
    ti = TaskInstanceStandIn()
    with pytest.raises(AirflowException, match=problem):
        op.execute({"ti": ti, "run_id": "manual__1"})  # type: ignore[arg-type]
    # an empty link record: resolving the link when the task ends finds no missing XCom
    assert ti.xcoms == {REPORT_XCOM_KEY: {}}


def test_quality_check_branches_take_both_or_neither() -> None:
    from bentoship_airflow.operators.monitoring import BentoQualityCheckOperator

    with pytest.raises(ValueError, match="both failed_branch and passed_branch"):
        BentoQualityCheckOperator(
            task_id="q", deployment_name="svc", monitor="calls", failed_branch="retrain"
        )


def test_quality_report_link_reads_the_recorded_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.sdk.execution_time.xcom import XCom

    from bentoship_airflow.get_provider_info import get_provider_info
    from bentoship_airflow.links.quality import (
        BentoQualityReportLink,
        persist_quality_report_link,
    )
    from bentoship_airflow.operators.monitoring import BentoQualityCheckOperator

    op = BentoQualityCheckOperator(task_id="q", deployment_name="svc", monitor="calls")
    written, missing = TaskInstanceStandIn(), TaskInstanceStandIn()
    persist_quality_report_link({"ti": written}, tmp_path / "report.html")  # type: ignore[arg-type]
    persist_quality_report_link({"ti": missing}, None)  # type: ignore[arg-type]
    link = BentoQualityReportLink()
    for ti, expected in ((written, (tmp_path / "report.html").as_uri()), (missing, "")):
        monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key, ti=ti: ti.xcoms[key])
        assert link.get_link(op, ti_key=None) == expected  # type: ignore[arg-type]
    monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key: None)
    assert link.get_link(op, ti_key=None) == ""  # type: ignore[arg-type]
    assert any(isinstance(declared, BentoQualityReportLink) for declared in op.operator_extra_links)
    assert link.name == "Quality report"
    assert (
        "bentoship_airflow.links.quality.BentoQualityReportLink"
        in (get_provider_info()["extra-links"])
    )


def test_send_feedback_skips_without_a_source() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from bentoship_airflow.operators.monitoring import BentoSendFeedbackOperator

    for blank in ("", "  "):
        op = BentoSendFeedbackOperator(
            task_id="f", deployment_name="svc", monitor="calls", source=blank
        )
        with pytest.raises(AirflowSkipException, match="no labels source"):
            op.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
    op = BentoSendFeedbackOperator(
        task_id="f", deployment_name="svc", monitor="calls", source={"url": "u", "query": "q"}
    )
    assert {"deployment_name", "monitor", "source", "id_field"} <= set(op.template_fields)
    assert op.template_fields_renderers == {"source": "json"}
