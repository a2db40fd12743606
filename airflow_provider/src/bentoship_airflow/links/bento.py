"""Extra links from a task to its deployment and to the deployment's endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

LINKS_XCOM_KEY = "bentoship_links"


def persist_links(context: Context, *, endpoint: str, deployment: str, url: str) -> None:
    """Record the console and endpoint URLs of ``deployment`` for this task's links."""
    links = {"deployment": f"{endpoint.rstrip('/')}/deployments/{deployment}", "endpoint": url}
    context["ti"].xcom_push(key=LINKS_XCOM_KEY, value=links)


class _BentoLink(BaseOperatorLink):
    kind = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        links: Any = XCom.get_value(ti_key=ti_key, key=LINKS_XCOM_KEY)
        return str(links.get(self.kind, "")) if isinstance(links, dict) else ""


class BentoDeploymentLink(_BentoLink):
    """The deployment's page on BentoCloud (or its path on the local control plane)."""

    name = "BentoCloud Deployment"
    kind = "deployment"


class BentoEndpointLink(_BentoLink):
    """The deployment's stable endpoint URL (Swagger UI at its root)."""

    name = "Deployment Endpoint"
    kind = "endpoint"
