"""One check of a rollout, and the wait built on it: what sensors, triggers and connectors loop on.

:func:`check_rollout` (and its asyncio twin :func:`acheck_rollout`) looks at a deployment once,
optionally long-polling for a change, and returns a :class:`RolloutCheck`: pending, ready or
failed, with the server's reason and, on failure, the tail of the revision's logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ._http import Plan, Sleep
from .errors import BentoshipError, DeploymentFailed, NotFoundError
from .logtail import last_error_line
from .models import DeploymentInfo, Rollout, RolloutLike, rollout_target
from .statuses import FAILED_STATUSES, READY_STATUSES

if TYPE_CHECKING:
    from .client import AsyncClient, Client, _Plans

__all__ = [
    "LOG_TAIL_LINES",
    "LONG_POLL_SECONDS",
    "RolloutCheck",
    "RolloutState",
    "acheck_rollout",
    "check_rollout",
]

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
EVENT_TAIL = 20
LONG_POLL_SECONDS = 30.0

Observer = Callable[[DeploymentInfo], None]


class RolloutState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutCheck:
    """The outcome of one look at a rollout."""

    state: RolloutState
    name: str
    revision: str | None
    deployment: DeploymentInfo | None = None
    message: str = ""
    reason: str = ""
    logs: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    """The deployment's latest events, when the rollout failed (local control plane)."""
    long_polled: bool = False
    """True when the check waited on the server for a change, so a loop needs no sleep."""

    @property
    def ready(self) -> bool:
        return self.state is RolloutState.READY

    @property
    def failed(self) -> bool:
        return self.state is RolloutState.FAILED

    @property
    def pending(self) -> bool:
        return self.state is RolloutState.PENDING

    @property
    def status(self) -> str:
        """The deployment's status (BentoCloud's word), or ``""`` when it is gone."""
        return self.deployment.status if self.deployment else ""

    def error(self) -> DeploymentFailed:
        """The DeploymentFailed to raise for a failed check."""
        return DeploymentFailed(
            self.message,
            deployment=self.name,
            status=self.status,
            reason=self.reason,
            logs="\n".join(self.logs),
            events="\n".join(self.events),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for trigger events and task outputs)."""
        dep = self.deployment
        return {
            "state": str(self.state),
            "deployment": self.name,
            "revision": self.revision,
            "status": self.status,
            "url": dep.url if dep else "",
            "bento": dep.bento if dep else "",
            "serving_revision": dep.serving_revision if dep else None,
            "message": self.message,
            "reason": self.reason,
            "logs": "\n".join(self.logs),
            "events": "\n".join(self.events),
        }


def judge(dep: DeploymentInfo, revision: str | None) -> tuple[RolloutState, str]:
    """Decide from one observation whether the rollout of ``revision`` is done or failed."""
    if revision and dep.target_revision and dep.target_revision != revision:
        return RolloutState.FAILED, (
            f"deployment {dep.name} was changed again while waiting "
            f"(it now targets revision {dep.target_revision}); wait for that rollout instead"
        )
    if revision and dep.candidate_revision == revision and dep.target_phase == "candidate":
        return RolloutState.READY, ""
    if dep.status in READY_STATUSES:
        if revision and dep.serving_revision and dep.serving_revision != revision:
            return RolloutState.PENDING, ""
        return RolloutState.READY, ""
    if dep.status in FAILED_STATUSES:
        reason = f": {dep.reason}" if dep.reason else ""
        return RolloutState.FAILED, f"deployment {dep.name} is {dep.status}{reason}"
    return RolloutState.PENDING, ""


def failure_message(name: str, message: str, logs: list[str]) -> str:
    cause = last_error_line(logs)
    if cause and cause not in message:
        message += f"; last error in its logs: {cause}"
    return f"{message}; see `bentoship logs {name}` and roll back with `bentoship rollback {name}`"


def _log_tail(client: _Plans, dep: DeploymentInfo, revision: str | None) -> Plan[list[str]]:
    target = revision or dep.target_revision
    if "logs" not in (yield from client._plan_extensions()) or not target:
        return []
    try:
        return (yield from client._plan_logs(dep.name, target, LOG_TAIL_LINES))
    except BentoshipError:
        return []


def _event_tail(client: _Plans, name: str) -> Plan[list[str]]:
    if "events" not in (yield from client._plan_extensions()):
        return []
    try:
        events = yield from client._plan_events(name, 0, None)
    except BentoshipError:
        return []
    return [str(event) for event in events[-EVENT_TAIL:]]


def log_failure(check: RolloutCheck) -> None:
    """Put a failed rollout's events into the log (so into the orchestrator's task log)."""
    if check.events:
        log.error("Latest events of deployment %s:\n%s", check.name, "\n".join(check.events))


def check_plan(
    client: _Plans,
    target: RolloutLike,
    *,
    deadline: float | None = None,
    wait: float = 0.0,
    observe: Observer | None = None,
) -> Plan[RolloutCheck]:
    """One check, as a plan: look (long-polling up to ``wait`` s while pending), then judge."""
    resolved = rollout_target(target)
    name = resolved.name if isinstance(resolved, Rollout) else resolved
    revision = resolved.revision if isinstance(resolved, Rollout) else None
    try:
        dep = yield from client._plan_get_deployment(name)
    except NotFoundError as exc:
        return RolloutCheck(RolloutState.FAILED, name, revision, message=str(exc))
    if observe is not None:
        observe(dep)
    state, message = judge(dep, revision)
    remaining = float("inf") if deadline is None else deadline - time.time()
    can_wait = state is RolloutState.PENDING and wait > 0 and remaining > 0
    long_polled = can_wait and "wait" in (yield from client._plan_extensions())
    if long_polled:
        dep = yield from client._plan_wait_for_change(
            name, dep.status, min(wait, remaining), dep.target_phase or None
        )
        if observe is not None:
            observe(dep)
        state, message = judge(dep, revision)
    if state is RolloutState.PENDING and deadline is not None and time.time() >= deadline:
        state = RolloutState.FAILED
        message = f"deployment {name} was not ready by its deadline (status {dep.status})"
    if state is not RolloutState.FAILED:
        return RolloutCheck(state, name, revision, dep, reason=dep.reason, long_polled=long_polled)
    logs = yield from _log_tail(client, dep, revision)
    events = yield from _event_tail(client, name)
    return RolloutCheck(
        state,
        name,
        revision,
        dep,
        message=failure_message(name, message, logs),
        reason=dep.reason,
        logs=tuple(logs),
        events=tuple(events),
    )


def wait_plan(
    client: _Plans,
    target: RolloutLike,
    *,
    timeout: float,
    poll_interval: float,
    observe: Observer | None = None,
) -> Plan[DeploymentInfo]:
    """Check until ready (return the deployment) or failed (raise DeploymentFailed)."""
    deadline = time.time() + timeout
    told = ""
    while True:
        check = yield from check_plan(
            client, target, deadline=deadline, wait=LONG_POLL_SECONDS, observe=observe
        )
        recreate = check.deployment.recreate if check.deployment else ""
        if recreate and recreate != told:
            told = recreate
            log.warning("deployment %s: %s", check.name, recreate)
        if check.ready and check.deployment is not None:
            return check.deployment
        if check.failed:
            log_failure(check)
            raise check.error()
        if not check.long_polled:
            yield Sleep(max(0.0, min(poll_interval, deadline - time.time())))


def check_rollout(
    target: RolloutLike,
    *,
    client: Client | None = None,
    deadline: float | None = None,
    wait: float = 0.0,
) -> RolloutCheck:
    """Look at a rollout once; long-poll up to ``wait`` seconds while it is pending.

    ``target`` is the deploy step's Rollout (as a Rollout, dict or JSON) or a deployment name.
    ``deadline`` is a wall-clock time (``time.time()``) after which a pending rollout counts as
    failed. The result is pending, ready or failed; a failed one carries the server's reason, a
    one-line message that says what to do, and the tail of the revision's logs.
    """
    if client is None:
        from .client import Client

        with Client() as own:
            return own._run(check_plan(own, target, deadline=deadline, wait=wait))
    return client._run(check_plan(client, target, deadline=deadline, wait=wait))


async def acheck_rollout(
    target: RolloutLike,
    *,
    client: AsyncClient,
    deadline: float | None = None,
    wait: float = 0.0,
) -> RolloutCheck:
    """The asyncio form of :func:`check_rollout`, for triggers and connectors."""
    return await client._run(check_plan(client, target, deadline=deadline, wait=wait))
