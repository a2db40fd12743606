"""The extra link from a drift check task to its HTML report.

As :mod:`.bento` does, the operator records the URL in an XCom while it runs (an empty record
when it wrote no report), and the link reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

REPORT_XCOM_KEY = "bentoship_drift_report"


def persist_report_link(context: Context, path: Path | None) -> None:
    """Record the report's URL (``file://``), or that there is none."""
    value = {"report": path.resolve().as_uri()} if path is not None else {}
    context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=value)


class BentoDriftReportLink(BaseOperatorLink):
    name = "Drift report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        found: Any = XCom.get_value(ti_key=ti_key, key=REPORT_XCOM_KEY)
        return str(found.get("report", "")) if isinstance(found, dict) else ""
