"""The wait step: block (or await) until a rollout's revision serves, or raise DeploymentFailed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..client import AsyncClient, Client
from ..errors import BentoshipError, DeploymentFailed
from ..logtail import last_error_line
from ..models import DeploymentInfo, Rollout
from ..statuses import FAILED_STATUSES, READY_STATUSES

LOG_TAIL_LINES = 40
LONG_POLL_SECONDS = 30.0


@dataclass(frozen=True)
class Verdict:
    ready: bool = False
    failed: bool = False
    message: str = ""


WAITING = Verdict()


def target_of(target: Rollout | str) -> tuple[str, str | None]:
    if isinstance(target, Rollout):
        return target.name, target.revision
    return target, None


def judge(dep: DeploymentInfo, revision: str | None) -> Verdict:
    """Decide from one observation whether the rollout of ``revision`` is done or failed."""
    if revision and dep.target_revision and dep.target_revision != revision:
        return Verdict(
            failed=True,
            message=f"deployment {dep.name} was changed again while waiting "
            f"(it now targets revision {dep.target_revision}); wait for that rollout instead",
        )
    if dep.status in READY_STATUSES:
        if revision and dep.serving_revision and dep.serving_revision != revision:
            return WAITING
        return Verdict(ready=True)
    if dep.status in FAILED_STATUSES:
        reason = f": {dep.reason}" if dep.reason else ""
        return Verdict(failed=True, message=f"deployment {dep.name} is {dep.status}{reason}")
    return WAITING


def failure(dep: DeploymentInfo, message: str, logs: list[str]) -> DeploymentFailed:
    cause = last_error_line(logs)
    text = message
    if cause and cause not in text:
        text += f"; last error in its logs: {cause}"
    text += f"; see `bentoship logs {dep.name}` and roll back with `bentoship rollback {dep.name}`"
    return DeploymentFailed(
        text, deployment=dep.name, status=dep.status, reason=dep.reason, logs="\n".join(logs)
    )


def _timed_out(dep: DeploymentInfo, timeout: float) -> str:
    return f"deployment {dep.name} was not ready after {timeout:g} s (status {dep.status})"


def wait_until_ready(
    target: Rollout | str,
    *,
    client: Client | None = None,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
    on_status: Callable[[DeploymentInfo], None] | None = None,
) -> DeploymentInfo:
    """Return the deployment once its rollout serves; raise DeploymentFailed otherwise.

    Against the local control plane this long-polls, so it returns as soon as the revision is
    green; against BentoCloud it polls every ``poll_interval`` seconds.
    """
    client = client or Client()
    name, revision = target_of(target)
    deadline = time.monotonic() + timeout
    dep = client.get_deployment(name)
    while True:
        if on_status is not None:
            on_status(dep)
        verdict = judge(dep, revision)
        if verdict.ready:
            return dep
        remaining = deadline - time.monotonic()
        if verdict.failed or remaining <= 0:
            message = verdict.message or _timed_out(dep, timeout)
            raise failure(dep, message, _logs(client, dep, revision))
        if "wait" in client.extensions:
            dep = client.wait_for_change(name, dep.status, min(remaining, LONG_POLL_SECONDS))
        else:
            time.sleep(min(poll_interval, remaining))
            dep = client.get_deployment(name)


async def async_wait_until_ready(
    target: Rollout | str,
    *,
    client: AsyncClient,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
) -> DeploymentInfo:
    """The asyncio form of :func:`wait_until_ready`, for triggers and connectors."""
    name, revision = target_of(target)
    deadline = time.monotonic() + timeout
    extensions = await client.get_extensions()
    dep = await client.get_deployment(name)
    while True:
        verdict = judge(dep, revision)
        if verdict.ready:
            return dep
        remaining = deadline - time.monotonic()
        if verdict.failed or remaining <= 0:
            message = verdict.message or _timed_out(dep, timeout)
            raise failure(dep, message, await async_log_tail(client, dep, revision))
        if "wait" in extensions:
            dep = await client.wait_for_change(name, dep.status, min(remaining, LONG_POLL_SECONDS))
        else:
            await asyncio.sleep(min(poll_interval, remaining))
            dep = await client.get_deployment(name)


def _logs(client: Client, dep: DeploymentInfo, revision: str | None) -> list[str]:
    target = revision or dep.target_revision
    if "logs" not in client.extensions or not target:
        return []
    try:
        return client.logs(dep.name, target, tail=LOG_TAIL_LINES)
    except BentoshipError:
        return []


async def async_log_tail(
    client: AsyncClient, dep: DeploymentInfo, revision: str | None
) -> list[str]:
    """The tail of the revision's logs, where the server keeps them (the local control plane)."""
    target = revision or dep.target_revision
    if "logs" not in await client.get_extensions() or not target:
        return []
    try:
        return await client.logs(dep.name, target, tail=LOG_TAIL_LINES)
    except BentoshipError:
        return []
