"""The rollout state machine: revision phases, the moves allowed between them, and the status.

A revision's phase changes only through :meth:`Controller.move`, which checks the move against
:data:`TRANSITIONS`. A deployment's status, in BentoCloud's words, is never stored: it is derived
from its lifecycle, its target revision's phase and the serving revision's health by
:func:`derive_status`.
"""

from __future__ import annotations

from enum import StrEnum

from ...statuses import DeploymentStatus

__all__ = [
    "FINAL_PHASES",
    "TRANSITIONS",
    "Health",
    "IllegalTransition",
    "Lifecycle",
    "RevisionPhase",
    "check_transition",
    "derive_status",
]


class RevisionPhase(StrEnum):
    STARTING = "starting"
    """Its process is starting; it takes no traffic until it answers ``/readyz``."""
    CANDIDATE = "candidate"
    """Ready and held for verification: it answers on the candidate URL, and on the endpoint
    only for its canary share, until it is promoted or discarded."""
    SERVING = "serving"
    """The deployment's endpoint sends its traffic here."""
    WARM = "warm"
    """Replaced, but its process is kept for the rollback window."""
    RETIRED = "retired"
    """It served once; its process is stopped."""
    FAILED = "failed"
    """It never became ready: it exited, crash-looped, or missed the readiness deadline."""
    CANCELLED = "cancelled"
    """A newer update, a rollback or a terminate superseded it before it served."""


FINAL_PHASES = frozenset({RevisionPhase.RETIRED, RevisionPhase.FAILED, RevisionPhase.CANCELLED})
"""Phases in which a revision runs nothing (a retired revision can still be rolled back to)."""


TRANSITIONS: dict[tuple[RevisionPhase, RevisionPhase], str] = {
    (RevisionPhase.STARTING, RevisionPhase.SERVING): "ready: the endpoint switches to it",
    (RevisionPhase.STARTING, RevisionPhase.CANDIDATE): "ready, and the rollout asked to verify it",
    (RevisionPhase.STARTING, RevisionPhase.FAILED): "exited, crash loop, or readiness deadline",
    (RevisionPhase.STARTING, RevisionPhase.CANCELLED): "superseded, or the deployment terminated",
    (RevisionPhase.CANDIDATE, RevisionPhase.SERVING): "promote: the endpoint switches to it",
    (RevisionPhase.CANDIDATE, RevisionPhase.CANCELLED): "discard, failed analysis, or superseded",
    (RevisionPhase.CANDIDATE, RevisionPhase.FAILED): "its process exited while it was a candidate",
    (
        RevisionPhase.CANDIDATE,
        RevisionPhase.STARTING,
    ): "the control plane restarted: it starts again",
    (RevisionPhase.SERVING, RevisionPhase.WARM): "the endpoint switched to another revision",
    (RevisionPhase.SERVING, RevisionPhase.RETIRED): "the deployment terminated",
    (RevisionPhase.WARM, RevisionPhase.SERVING): "rollback to it while it is warm",
    (RevisionPhase.WARM, RevisionPhase.STARTING): "rollback to it after its process exited",
    (RevisionPhase.WARM, RevisionPhase.RETIRED): "rollback window over, terminate, or restart",
    (RevisionPhase.RETIRED, RevisionPhase.STARTING): "rollback to it: its process starts again",
}
"""Every allowed move, with what makes it. A move to the same phase is no move."""


class IllegalTransition(RuntimeError):
    """A move the state machine does not allow: a bug in the controller, never user input."""


def check_transition(current: RevisionPhase, target: RevisionPhase) -> None:
    """Raise IllegalTransition unless ``current -> target`` is in :data:`TRANSITIONS`."""
    if current != target and (current, target) not in TRANSITIONS:
        raise IllegalTransition(f"a revision cannot move from {current} to {target}")


class Lifecycle(StrEnum):
    """What was last asked of the deployment as a whole."""

    ACTIVE = "active"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


class Health(StrEnum):
    """How the serving revision's process is doing (runtime only, never stored)."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    """Its process exited; it is being restarted with backoff."""
    RESTARTING = "restarting"
    """It is being started again: after a restart of the control plane, or to wake from zero."""
    SCALED_TO_ZERO = "scaled-to-zero"


def derive_status(
    lifecycle: Lifecycle,
    target: RevisionPhase | None,
    health: Health,
    *,
    serving_process: bool,
) -> DeploymentStatus:
    """The deployment's status from its lifecycle, its target's phase and its serving health.

    A candidate target leaves the status to the revision that serves: the endpoint is unchanged
    until the candidate is promoted (with none serving yet, the deployment is deploying).
    """
    if lifecycle is Lifecycle.TERMINATING:
        return DeploymentStatus.TERMINATING
    if lifecycle is Lifecycle.TERMINATED:
        return DeploymentStatus.TERMINATED
    if target in (RevisionPhase.FAILED, RevisionPhase.CANCELLED):
        return DeploymentStatus.FAILED
    if target not in (RevisionPhase.SERVING, RevisionPhase.CANDIDATE):
        return DeploymentStatus.DEPLOYING
    if health is Health.SCALED_TO_ZERO:
        return DeploymentStatus.SCALED_TO_ZERO
    if health is Health.UNHEALTHY:
        return DeploymentStatus.UNHEALTHY
    if health is Health.RESTARTING or not serving_process:
        return DeploymentStatus.DEPLOYING
    return DeploymentStatus.RUNNING
