"""Extra links from a task to its deployment and to the deployment's endpoint.

As in Airflow's own providers (the amazon provider's ``BaseAwsLink.persist``), an operator that
declares these links records their URLs in one XCom while it runs, with :func:`persist_links`,
and the links read that XCom. When a task ends, Airflow resolves each declared link (to store
it under ``_link_<ClassName>``), whatever the task's outcome; a missing XCom makes the task log
an ``XCom not found`` error. So every operator that declares the links records them on every
path, an empty record when there is nothing to link to (a skipped rollback).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

LINKS_XCOM_KEY = "bentoship_links"
"""The XCom that holds a task's link URLs: ``{"deployment": ..., "endpoint": ...}``."""


def links_record(
    *, endpoint: str | None = None, deployment: str | None = None, url: str | None = None
) -> dict[str, str]:
    """The link URLs: the console page of ``deployment`` on ``endpoint``, and its URL ``url``.

    A link whose parts are not known is left out, and shows as disabled.
    """
    links = {}
    if endpoint and deployment:
        links[BentoDeploymentLink.kind] = f"{endpoint.rstrip('/')}/deployments/{deployment}"
    if url:
        links[BentoEndpointLink.kind] = url
    return links


def persist_links(
    context: Context,
    *,
    endpoint: str | None = None,
    deployment: str | None = None,
    url: str | None = None,
) -> None:
    """Record this task's link URLs (see :func:`links_record`); call it with no URL parts to
    record that the task has nothing to link to."""
    record = links_record(endpoint=endpoint, deployment=deployment, url=url)
    context["ti"].xcom_push(key=LINKS_XCOM_KEY, value=record)


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
