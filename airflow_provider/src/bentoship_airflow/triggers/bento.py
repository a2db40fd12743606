"""A trigger that waits for a deployment's rollout with the async client, holding no worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from bentoship_airflow.hooks.bentocloud import DEFAULT_CONN_ID


class BentoDeploymentTrigger(BaseTrigger):
    """Fire once the deployment serves ``rollout``'s revision, or once it fails.

    :param deployment_name: the deployment to watch.
    :param rollout: the deploy step's rollout record (as a dict), to watch that revision.
    :param bentocloud_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait before the rollout counts as failed.
    :param poll_interval: seconds between polls against servers without the long-poll.
    """

    def __init__(
        self,
        deployment_name: str,
        rollout: dict[str, Any] | None = None,
        bentocloud_conn_id: str = DEFAULT_CONN_ID,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
    ) -> None:
        super().__init__()
        self.deployment_name = deployment_name
        self.rollout = rollout
        self.bentocloud_conn_id = bentocloud_conn_id
        self.timeout = timeout
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "deployment_name": self.deployment_name,
                "rollout": self.rollout,
                "bentocloud_conn_id": self.bentocloud_conn_id,
                "timeout": self.timeout,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from bentoship import Rollout
        from bentoship.errors import BentoshipError, DeploymentFailed
        from bentoship.steps import async_wait_until_ready
        from bentoship_airflow.hooks.bentocloud import BentoCloudHook

        target: Rollout | str = (
            Rollout.from_dict(self.rollout) if self.rollout else self.deployment_name
        )
        base = {"deployment": self.deployment_name, "rollout": self.rollout}
        try:
            client = await BentoCloudHook(self.bentocloud_conn_id).get_async_conn()
            async with client:
                dep = await async_wait_until_ready(
                    target, client=client, timeout=self.timeout, poll_interval=self.poll_interval
                )
        except DeploymentFailed as exc:
            yield TriggerEvent(
                {
                    **base,
                    "status": "error",
                    "message": str(exc),
                    "reason": exc.reason,
                    "logs": exc.logs,
                }
            )
            return
        except BentoshipError as exc:
            yield TriggerEvent({**base, "status": "error", "message": str(exc), "logs": ""})
            return
        yield TriggerEvent(
            {**base, "status": "success", "url": dep.url, "revision": dep.serving_revision}
        )
