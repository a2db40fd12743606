"""Triggers that wait with the async client, holding no worker: for a deployment's rollout, and
for the verdict of a canary or shadow analysis the control plane runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from bentoship_airflow.hooks.bentocloud import DEFAULT_CONN_ID

LONG_POLL_SECONDS = 30.0


class BentoDeploymentTrigger(BaseTrigger):
    """Fire once the deployment serves ``rollout``'s revision, or once it fails.

    :param deployment_name: the deployment to watch.
    :param rollout: the deploy step's rollout record (as a dict), to watch that revision.
    :param bentocloud_conn_id: the Airflow connection to use.
    :param timeout: seconds to wait before the rollout counts as failed (when ``deadline`` is
        not given).
    :param poll_interval: seconds between polls against servers without the long-poll.
    :param deadline: wall-clock time (seconds since the epoch) after which the rollout counts as
        failed; kept across a restart of the triggerer.
    """

    def __init__(
        self,
        deployment_name: str,
        rollout: dict[str, Any] | None = None,
        bentocloud_conn_id: str = DEFAULT_CONN_ID,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.deployment_name = deployment_name
        self.rollout = rollout
        self.bentocloud_conn_id = bentocloud_conn_id
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deadline = deadline if deadline is not None else time.time() + timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "deployment_name": self.deployment_name,
                "rollout": self.rollout,
                "bentocloud_conn_id": self.bentocloud_conn_id,
                "timeout": self.timeout,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from bentoship import BentoshipError, acheck_rollout
        from bentoship_airflow.hooks.bentocloud import BentoCloudHook

        base = {"deployment": self.deployment_name, "rollout": self.rollout}
        target = self.rollout or self.deployment_name
        try:
            client = await BentoCloudHook(self.bentocloud_conn_id).get_async_conn()
            async with client:
                while True:
                    check = await acheck_rollout(
                        target, client=client, deadline=self.deadline, wait=LONG_POLL_SECONDS
                    )
                    if not check.pending:
                        break
                    if not check.long_polled:
                        await asyncio.sleep(self.poll_interval)
        except BentoshipError as exc:
            yield TriggerEvent({**base, "status": "error", "message": str(exc), "logs": ""})
            return
        if check.failed:
            yield TriggerEvent(
                {
                    **base,
                    "status": "error",
                    "message": check.message,
                    "reason": check.reason,
                    "logs": "\n".join(check.logs),
                    "events": "\n".join(check.events),
                }
            )
            return
        dep = check.deployment
        yield TriggerEvent(
            {
                **base,
                "status": "success",
                "url": dep.url if dep else "",
                "revision": dep.serving_revision if dep else None,
            }
        )


class _AnalysisTrigger(BaseTrigger):
    """Fire once the control plane's analysis of a deployment's candidate has its verdict
    (promoted, discarded or stopped), or once ``deadline`` passes.

    :param deployment_name: the deployment whose latest analysis to watch.
    :param bentocloud_conn_id: the Airflow connection to use.
    :param deadline: wall-clock time (seconds since the epoch) after which the task fails (the
        analysis goes on); kept across a restart of the triggerer.
    """

    kind = "analysis"

    def __init__(
        self,
        deployment_name: str,
        bentocloud_conn_id: str = DEFAULT_CONN_ID,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.deployment_name = deployment_name
        self.bentocloud_conn_id = bentocloud_conn_id
        self.deadline = deadline if deadline is not None else time.time() + 3600.0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "deployment_name": self.deployment_name,
                "bentocloud_conn_id": self.bentocloud_conn_id,
                "deadline": self.deadline,
            },
        )

    def seen(self, record: dict[str, Any]) -> int:
        """What the next long poll has seen of ``record`` (it answers once there is more)."""
        return len(record["steps"])

    def tell(self, record: dict[str, Any]) -> None:
        """Log what the running analysis has so far."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from bentoship import BentoshipError
        from bentoship_airflow.hooks.bentocloud import BentoCloudHook

        name = self.deployment_name
        try:
            client = await BentoCloudHook(self.bentocloud_conn_id).get_async_conn()
            async with client:
                record = await client.analysis(name)
                while record["state"] == "running":
                    left = self.deadline - time.time()
                    if left <= 0:
                        message = (
                            f"{self.kind} {record['revision']} of {name} has no verdict yet; the "
                            "control plane goes on with it"
                        )
                        yield TriggerEvent({"status": "error", "message": message})
                        return
                    self.tell(record)
                    wait = min(left, LONG_POLL_SECONDS)
                    record = await client.analysis(name, seen=self.seen(record), timeout=wait)
        except BentoshipError as exc:
            yield TriggerEvent({"status": "error", "message": str(exc)})
            return
        yield TriggerEvent({"status": "success", "analysis": record})


class BentoCanaryAnalysisTrigger(_AnalysisTrigger):
    """Fire once the control plane's canary analysis of a deployment's candidate has its
    verdict (promoted, discarded or stopped), or once ``deadline`` passes (see the base's
    parameters)."""

    kind = "canary"


class BentoShadowAnalysisTrigger(_AnalysisTrigger):
    """Fire once the control plane's shadow analysis of a deployment's candidate has its
    verdict (promoted, discarded or stopped), or once ``deadline`` passes (see the base's
    parameters); the pairs so far are logged as they come."""

    kind = "shadow"

    def seen(self, record: dict[str, Any]) -> int:
        return 0

    def tell(self, record: dict[str, Any]) -> None:
        progress = record.get("progress")
        if progress:
            self.log.info(
                "shadow %s of %s: %d of %d pairs after %.0f s (%d dropped)",
                record["revision"],
                self.deployment_name,
                progress["pairs"],
                progress["min_pairs"],
                progress["seconds"],
                progress["dropped"],
            )


class BentoApprovalTrigger(BaseTrigger):
    """Fire once a person decided a pending approval (or it expired or was withdrawn), or once
    ``deadline`` passes.

    :param deployment_name: the deployment whose approval to watch.
    :param approval_id: the approval.
    :param bentocloud_conn_id: the Airflow connection to use.
    :param deadline: wall-clock time (seconds since the epoch) after which the task fails (the
        approval stays pending on the control plane until its own deadline).
    """

    def __init__(
        self,
        deployment_name: str,
        approval_id: str,
        bentocloud_conn_id: str = DEFAULT_CONN_ID,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.deployment_name = deployment_name
        self.approval_id = approval_id
        self.bentocloud_conn_id = bentocloud_conn_id
        self.deadline = deadline if deadline is not None else time.time() + 86400.0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "deployment_name": self.deployment_name,
                "approval_id": self.approval_id,
                "bentocloud_conn_id": self.bentocloud_conn_id,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from bentoship import BentoshipError
        from bentoship_airflow.hooks.bentocloud import BentoCloudHook

        name, approval_id = self.deployment_name, self.approval_id
        try:
            client = await BentoCloudHook(self.bentocloud_conn_id).get_async_conn()
            async with client:
                record = await client.approval(name, approval_id)
                while record["state"] == "pending":
                    left = self.deadline - time.time()
                    if left <= 0:
                        message = f"approval {approval_id} of {name} is still pending"
                        yield TriggerEvent({"status": "error", "message": message})
                        return
                    wait = min(left, LONG_POLL_SECONDS)
                    record = await client.approval(name, approval_id, wait=wait)
        except BentoshipError as exc:
            yield TriggerEvent({"status": "error", "message": str(exc)})
            return
        yield TriggerEvent({"status": "success", "approval": record})
