"""The wait step: block (or await) until a rollout's revision serves, or raise DeploymentFailed."""

from __future__ import annotations

from ..client import AsyncClient, Client
from ..models import DeploymentInfo, RolloutLike
from ..rollouts import Observer, wait_plan
from ..step_spans import traced_step

__all__ = ["async_wait_until_ready", "wait_until_ready"]


@traced_step("wait")
def wait_until_ready(
    target: RolloutLike,
    *,
    client: Client | None = None,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
    on_status: Observer | None = None,
) -> DeploymentInfo:
    """Return the deployment once its rollout serves; raise DeploymentFailed otherwise.

    ``target`` is the deploy step's Rollout (as a Rollout, dict or JSON) or a deployment name.
    Against the local control plane this long-polls, so it returns as soon as the revision is
    green; against BentoCloud it polls every ``poll_interval`` seconds.
    """
    if client is None:
        with Client() as own:
            return wait_until_ready(
                target,
                client=own,
                timeout=timeout,
                poll_interval=poll_interval,
                on_status=on_status,
            )
    return client._run(
        wait_plan(client, target, timeout=timeout, poll_interval=poll_interval, observe=on_status)
    )


async def async_wait_until_ready(
    target: RolloutLike,
    *,
    client: AsyncClient,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
    on_status: Observer | None = None,
) -> DeploymentInfo:
    """The asyncio form of :func:`wait_until_ready`, for triggers and connectors."""
    return await client._run(
        wait_plan(client, target, timeout=timeout, poll_interval=poll_interval, observe=on_status)
    )
