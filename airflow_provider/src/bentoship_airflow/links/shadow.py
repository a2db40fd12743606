"""The extra link from a shadow analysis task to the control plane's report of the pairs.

The report (``GET /api/v2/deployments/{name}/shadow/report``) needs the control plane's token
or a console session. A console session cookie is ``SameSite=Strict``, so a browser sends none
on a click from the Airflow UI (another site): the link goes to the console's sign-in page with
the report as the page to open next. After signing in with the token, the user lands on the
report, from any machine whose browser reaches the control plane.

As :mod:`.bento` does, the operator records the URL in an XCom while it runs (an empty record
when there is nothing to link to), and the link reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

SHADOW_REPORT_XCOM_KEY = "bentoship_shadow_report"
SIGNIN_PATH = "/login"


def shadow_report_url(endpoint: str, deployment: str) -> str:
    """The console's sign-in page, which opens ``deployment``'s shadow report next."""
    report = f"/api/v2/deployments/{quote(deployment, safe='')}/shadow/report"
    return f"{endpoint.rstrip('/')}{SIGNIN_PATH}?next={quote(report, safe='')}"


def persist_shadow_report_link(
    context: Context, *, endpoint: str | None = None, deployment: str | None = None
) -> None:
    """Record the report's URL, or (with no endpoint or deployment) that there is none."""
    value = {"report": shadow_report_url(endpoint, deployment)} if endpoint and deployment else {}
    context["ti"].xcom_push(key=SHADOW_REPORT_XCOM_KEY, value=value)


class BentoShadowReportLink(BaseOperatorLink):
    """The deployment's shadow report on the control plane (the latest analysis's, or the live
    one while mirroring), through the console's sign-in."""

    name = "Shadow report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        found: Any = XCom.get_value(ti_key=ti_key, key=SHADOW_REPORT_XCOM_KEY)
        return str(found.get("report", "")) if isinstance(found, dict) else ""
