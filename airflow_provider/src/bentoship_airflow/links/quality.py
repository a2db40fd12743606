"""The extra link from a quality check task to its HTML report.

As :mod:`.drift` does, the operator records the URL in an XCom while it runs (an empty record
when it wrote no report), and the link reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

REPORT_XCOM_KEY = "bentoship_quality_report"


def persist_quality_report_link(context: Context, path: Path | None) -> None:
    """Record the report's URL (``file://``), or that there is none."""
    value = {"report": path.resolve().as_uri()} if path is not None else {}
    context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=value)


class BentoQualityReportLink(BaseOperatorLink):
    name = "Quality report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        found: Any = XCom.get_value(ti_key=ti_key, key=REPORT_XCOM_KEY)
        return str(found.get("report", "")) if isinstance(found, dict) else ""
