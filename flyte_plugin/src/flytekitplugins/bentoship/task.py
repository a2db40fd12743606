"""The deploy-and-wait task that the bentoship connector runs, holding no pod while it waits."""

from dataclasses import dataclass
from typing import Any

from flytekit.configuration import SerializationSettings
from flytekit.core.base_task import PythonTask
from flytekit.core.interface import Interface
from flytekit.extend.backend.base_connector import AsyncConnectorExecutorMixin

TASK_TYPE = "bentoship_deployment"

INPUTS: dict[str, Any] = {
    "name": str,
    "bento": str,
    "config": (dict | None, None),
    "candidate": (bool, False),
    "endpoint": (str | None, None),
}
OUTPUTS: dict[str, type] = {"rollout": str, "url": str}


@dataclass
class BentoDeploymentConfig:
    """How long the rollout may take, and whether a failed rollout is rolled back at once."""

    timeout: float = 600.0
    rollback_on_failure: bool = True


class BentoDeploymentTask(AsyncConnectorExecutorMixin, PythonTask[BentoDeploymentConfig]):
    """Deploy a Bento and wait until it serves, in the bentoship connector.

    Inputs: ``name`` (the deployment), ``bento`` (a pushed tag), optional ``config`` (the deploy
    step's keys), ``candidate`` (hold the revision on the candidate URL until
    :func:`promote_deployment`) and ``endpoint``. Outputs: ``rollout`` (the deploy step's
    Rollout as JSON) and ``url`` (the candidate URL for a candidate). The connector
    authenticates with its own ``BENTO_CLOUD_API_KEY`` or Flyte secret ``bentoship/api_key``,
    so no token passes through the task's inputs.

    A rollout that fails is rolled back at once (unless ``rollback_on_failure=False``) and the task
    fails with the server's reason. Aborting the task rolls back a rollout still in progress.
    Without the connector deployed, use :func:`deploy_and_wait`, which has the same interface.
    """

    _TASK_TYPE = TASK_TYPE

    def __init__(
        self,
        name: str,
        timeout_seconds: float = 600.0,
        rollback_on_failure: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name=name,
            task_type=self._TASK_TYPE,
            task_config=BentoDeploymentConfig(
                timeout=timeout_seconds, rollback_on_failure=rollback_on_failure
            ),
            interface=Interface(inputs=INPUTS, outputs=OUTPUTS),
            **kwargs,
        )

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        return {
            "timeout": self.task_config.timeout,
            "rollback_on_failure": self.task_config.rollback_on_failure,
        }
