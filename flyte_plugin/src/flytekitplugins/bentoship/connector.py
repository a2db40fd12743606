"""The bentoship connector: deploy, then report the rollout's phase, without holding a pod.

- ``create`` runs the deploy step (create or update, idempotent) and keeps its Rollout.
- ``get`` observes the deployment once, long-polling at most ``GET_WAIT_SECONDS`` where the
  server offers it, and judges the rollout with bentoship's own rule. A failed rollout is
  rolled back (unless the task says otherwise) and reported with the server's reason and the
  last error in the revision's logs.
- ``delete`` (Flyte calls it when the task is aborted) rolls back a rollout still in progress.

On a cluster the connector runs in its own deployment (``pyflyte serve connector --modules
flytekitplugins.bentoship``) and authenticates with its own ``BENTO_CLOUD_API_KEY`` or Flyte
secret ``bentoship/api_key``; the endpoint comes from the task's input or the connector's
``BENTO_CLOUD_API_ENDPOINT``.
"""

import asyncio
import time
import typing
from dataclasses import dataclass
from typing import Any

from flyteidl.core.execution_pb2 import TaskExecution, TaskLog
from flytekit import FlyteContextManager, logger
from flytekit.core.type_engine import TypeEngine
from flytekit.extend.backend.base_connector import (
    AsyncConnectorBase,
    ConnectorRegistry,
    Resource,
    ResourceMeta,
)
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate

from ._connection import async_client, client
from .task import INPUTS, TASK_TYPE, BentoDeploymentConfig

if typing.TYPE_CHECKING:
    from bentoship import DeploymentInfo, Rollout

GET_WAIT_SECONDS = 5.0
"""Longest long-poll in one ``get``: well under propeller's 10 s default connector call timeout."""

PYTHON_INPUTS: dict[str, Any] = {
    key: kind[0] if isinstance(kind, tuple) else kind for key, kind in INPUTS.items()
}
"""The task's input types, to read its literals back into Python values."""


@dataclass
class BentoDeploymentMetadata(ResourceMeta):
    """What ``get`` and ``delete`` need: the Rollout (JSON), its deadline and the endpoint.

    It holds no token: the connector brings its own credentials.
    """

    rollout: str
    deadline: float
    """Wall-clock time (seconds since the epoch) after which the rollout counts as failed."""
    endpoint: str = ""
    rollback_on_failure: bool = True


class BentoDeploymentConnector(AsyncConnectorBase):
    name = "bentoship Deployment Connector"

    def __init__(self) -> None:
        super().__init__(task_type_name=TASK_TYPE, metadata_type=BentoDeploymentMetadata)

    async def create(
        self,
        task_template: TaskTemplate,
        inputs: LiteralMap | None = None,
        **kwargs: Any,
    ) -> BentoDeploymentMetadata:
        from bentoship.steps import deploy

        args = await _native_inputs(inputs)
        settings = _settings(task_template.custom or {})
        endpoint = args.get("endpoint") or None

        def apply() -> "Rollout":
            with client(endpoint) as api:
                return deploy(
                    args["name"],
                    args["bento"],
                    args.get("config"),
                    candidate=bool(args.get("candidate")),
                    client=api,
                )

        rollout = await asyncio.to_thread(apply)
        logger.info(f"bentoship: deployment {rollout.name} targets revision {rollout.revision}")
        return BentoDeploymentMetadata(
            rollout=rollout.to_json(),
            deadline=time.time() + settings.timeout,
            endpoint=endpoint or "",
            rollback_on_failure=settings.rollback_on_failure,
        )

    async def get(self, resource_meta: BentoDeploymentMetadata, **kwargs: Any) -> Resource:
        from bentoship import Rollout, acheck_rollout

        rollout = Rollout.from_json(resource_meta.rollout)
        async with async_client(resource_meta.endpoint or None) as api:
            check = await acheck_rollout(
                rollout, client=api, deadline=resource_meta.deadline, wait=GET_WAIT_SECONDS
            )
        dep = check.deployment
        links = _links(dep) if dep is not None else []
        if check.ready and dep is not None:
            url = rollout.url if rollout.candidate else dep.url
            what = "holds candidate" if rollout.candidate else "serves"
            return Resource(
                phase=TaskExecution.SUCCEEDED,
                message=f"deployment {dep.name} {what} {rollout.bento} at {url}",
                log_links=links,
                outputs={"rollout": resource_meta.rollout, "url": url},
            )
        if check.pending:
            return Resource(
                phase=TaskExecution.RUNNING,
                message=f"deployment {check.name} is {check.status}",
                log_links=links,
            )
        text = check.message
        if resource_meta.rollback_on_failure and dep is not None:
            text += f"; {await asyncio.to_thread(_undo, resource_meta, rollout)}"
        return Resource(phase=TaskExecution.FAILED, message=text, log_links=links)

    def delete(self, resource_meta: BentoDeploymentMetadata, **kwargs: Any) -> None:
        from bentoship import Rollout

        outcome = _undo(resource_meta, Rollout.from_json(resource_meta.rollout))
        logger.info(f"bentoship: task aborted; {outcome}")


async def _native_inputs(inputs: LiteralMap | None) -> dict[str, Any]:
    if inputs is None:
        return {}
    ctx = FlyteContextManager.current_context()
    return {
        key: await TypeEngine.async_to_python_value(ctx, literal, PYTHON_INPUTS[key])
        for key, literal in inputs.literals.items()
        if key in PYTHON_INPUTS
    }


def _settings(custom: dict[str, Any]) -> BentoDeploymentConfig:
    defaults = BentoDeploymentConfig()
    return BentoDeploymentConfig(
        timeout=float(custom.get("timeout", defaults.timeout)),
        rollback_on_failure=bool(custom.get("rollback_on_failure", defaults.rollback_on_failure)),
    )


def _links(dep: "DeploymentInfo") -> list[TaskLog]:
    return [TaskLog(name=f"{dep.name} endpoint", uri=dep.url)] if dep.url else []


def _undo(meta: BentoDeploymentMetadata, rollout: "Rollout") -> str:
    """Roll back ``rollout`` if it is still the deployment's target and does not serve yet."""
    from bentoship.steps import abort

    with client(meta.endpoint or None) as api:
        return abort(rollout, client=api)


ConnectorRegistry.register(BentoDeploymentConnector())
