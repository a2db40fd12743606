"""Each deployment's event log: what happened to it and its revisions, and why.

The controller records an event for every change of a revision's phase and every command
(rollback, promote, discard, a canary's weights), every restart after a crash, and every scale
to zero and wake-up. Events are kept in the state store, the newest 1,000 per deployment.
"""

from __future__ import annotations

import time
from enum import StrEnum

from ..store import Event, Store

__all__ = ["EventKind", "EventLog"]

KEEP_PER_DEPLOYMENT = 1000


class EventKind(StrEnum):
    CREATED = "created"
    """A revision was created (by a create, an update or a rollback to a cold revision)."""
    STARTING = "starting"
    READY = "ready"
    """A revision answered its readiness check (then it is switched to, or held)."""
    HELD = "held"
    """A ready revision is held as a candidate, before it takes live traffic."""
    SWITCHED = "switched"
    """The endpoint now serves another revision."""
    FAILED = "failed"
    CANCELLED = "cancelled"
    WARM = "warm"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"
    PROMOTED = "promoted"
    DISCARDED = "discarded"
    CANARY = "canary"
    CRASHED = "crashed"
    RESTARTED = "restarted"
    """The serving revision's process ended on its own and was started again."""
    GPUS = "gpus"
    """A revision's process was given GPUs (its ``CUDA_VISIBLE_DEVICES``)."""
    RECREATE = "recreate"
    """A rollout stops the deployment's serving revision before it starts: only its GPUs fit."""
    SCALED = "scaled"
    """The serving revision's replica count changed (the autoscaler)."""
    SCALED_TO_ZERO = "scaled_to_zero"
    WOKEN = "woken"
    TERMINATED = "terminated"
    INTERNAL_ERROR = "internal_error"
    """A background task of the control plane failed (a bug); the server's log has its
    traceback, and the revision it was rolling out, if any, is failed."""


class EventLog:
    def __init__(self, store: Store, keep: int = KEEP_PER_DEPLOYMENT) -> None:
        self.store = store
        self.keep = keep

    def record(
        self, deployment: str, kind: EventKind, message: str, revision: str | None = None
    ) -> None:
        event = Event(deployment, time.time(), str(kind), message, revision)
        self.store.add_event(event, self.keep)

    def of(
        self, deployment: str, *, after: int = 0, since: float = 0.0, limit: int = 1000
    ) -> list[Event]:
        return self.store.list_events(deployment, after=after, since=since, limit=limit)
