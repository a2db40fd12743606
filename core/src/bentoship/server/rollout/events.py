"""Each deployment's events: typed records of what happened to it and its revisions, kept in
an outbox (the state store's ``events`` table) under a monotonic id.

Every state change publishes one of the typed events below; the sentence people read is
derived from its fields (:meth:`DeploymentEvent.describe`), and its fields travel with it
(``data``). Readers follow a cursor: the id of the last event they took. A reader registered
by name (webhooks, say) keeps its cursor in the store, and retention, a bound on the events'
age and count, never drops an event such a reader has not passed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from ..store import Event, Store

__all__ = [
    "EVENT_TYPES",
    "DeploymentEvent",
    "EventKind",
    "EventLog",
    "event_from",
]

KEEP_SECONDS = 30 * 86400.0
KEEP_ROWS = 200_000
PRUNE_EVERY = 500
"""Publications between two prunes of the outbox."""


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
    ANALYSIS = "analysis"
    """A candidate's analysis started, or judged one of its steps (the control plane runs it)."""
    VERDICT = "verdict"
    """A candidate's analysis ended: promoted, discarded, or stopped when the candidate left."""
    SHADOW = "shadow"
    """Mirroring of the endpoint's requests to a held candidate started or stopped."""
    APPROVAL = "approval"
    """An approval of the held candidate was requested, or decided (approved, rejected,
    expired, withdrawn), by whom and why."""
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


@dataclass(frozen=True)
class DeploymentEvent:
    """A typed event of a deployment: ``revision`` is the short name (``r3``) it is about."""

    kind: ClassVar[EventKind]
    revision: str | None

    def describe(self) -> str:
        """The sentence shown to people."""
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        """Its typed fields, as JSON (with ``type``, the event's class name)."""
        return {"type": type(self).__name__, **dataclasses.asdict(self)}


def _because(reason: str) -> str:
    return f": {reason}" if reason else ""


def _replica(replica: int | None) -> str:
    return f" replica {replica}" if replica is not None else ""


@dataclass(frozen=True)
class Created(DeploymentEvent):
    kind = EventKind.CREATED
    bento: str

    def describe(self) -> str:
        return f"{self.revision} created: {self.bento}"


@dataclass(frozen=True)
class Starting(DeploymentEvent):
    kind = EventKind.STARTING
    bento: str

    def describe(self) -> str:
        return f"{self.revision} ({self.bento}) is starting"


@dataclass(frozen=True)
class Ready(DeploymentEvent):
    kind = EventKind.READY

    def describe(self) -> str:
        return f"{self.revision} is ready"


@dataclass(frozen=True)
class Held(DeploymentEvent):
    kind = EventKind.HELD

    def describe(self) -> str:
        return f"{self.revision} is held as a candidate, without live traffic"


@dataclass(frozen=True)
class Switched(DeploymentEvent):
    kind = EventKind.SWITCHED
    replicas: int
    previous: str | None

    def describe(self) -> str:
        on = f" on {self.replicas} replicas" if self.replicas > 1 else ""
        before = f" (was {self.previous})" if self.previous else ""
        return f"the endpoint now serves {self.revision}{on}{before}"


@dataclass(frozen=True)
class Failed(DeploymentEvent):
    kind = EventKind.FAILED
    reason: str

    def describe(self) -> str:
        return f"{self.revision} failed{_because(self.reason)}"


@dataclass(frozen=True)
class Cancelled(DeploymentEvent):
    kind = EventKind.CANCELLED
    reason: str

    def describe(self) -> str:
        return f"{self.revision} was cancelled{_because(self.reason)}"


@dataclass(frozen=True)
class Warm(DeploymentEvent):
    kind = EventKind.WARM

    def describe(self) -> str:
        return f"{self.revision} is kept warm for a rollback"


@dataclass(frozen=True)
class Retired(DeploymentEvent):
    kind = EventKind.RETIRED

    def describe(self) -> str:
        return f"{self.revision} is retired (stopped)"


@dataclass(frozen=True)
class RolledBack(DeploymentEvent):
    kind = EventKind.ROLLED_BACK
    was_serving: str | None
    reason: str = ""
    """Why, when the caller said (a quality check gives its figures)."""

    def describe(self) -> str:
        was = f"rollback to {self.revision} (was serving {self.was_serving or 'nothing'})"
        return f"{was}{_because(self.reason)}"


@dataclass(frozen=True)
class Promoted(DeploymentEvent):
    kind = EventKind.PROMOTED

    def describe(self) -> str:
        return f"candidate {self.revision} promoted"


@dataclass(frozen=True)
class Discarded(DeploymentEvent):
    kind = EventKind.DISCARDED

    def describe(self) -> str:
        return f"{self.revision} discarded"


@dataclass(frozen=True)
class CanaryWeight(DeploymentEvent):
    kind = EventKind.CANARY
    weight: int

    def describe(self) -> str:
        return f"{self.revision} takes {self.weight}% of the endpoint's requests"


@dataclass(frozen=True)
class AnalysisStarted(DeploymentEvent):
    kind = EventKind.ANALYSIS
    steps: str
    """The ramp, as ``10%, 50%, 100%``."""
    interval: float

    def describe(self) -> str:
        return (
            f"the control plane analyses {self.revision}: steps {self.steps}, "
            f"{self.interval:g} s each"
        )


@dataclass(frozen=True)
class StepJudged(DeploymentEvent):
    kind = EventKind.ANALYSIS
    weight: int
    held: bool
    figures: str
    """The step's figures against the baseline's and its verdict, as one line."""

    def describe(self) -> str:
        return f"canary {self.revision} {self.figures}"


@dataclass(frozen=True)
class AnalysisEnded(DeploymentEvent):
    kind = EventKind.VERDICT
    verdict: str
    """``promoted``, ``discarded`` or ``stopped``."""
    reason: str

    def describe(self) -> str:
        return f"analysis of {self.revision}: {self.verdict}{_because(self.reason)}"


@dataclass(frozen=True)
class ShadowStarted(DeploymentEvent):
    kind = EventKind.SHADOW
    percent: int
    apis: str
    """The mirrored APIs, comma-separated; empty for every API."""

    def describe(self) -> str:
        apis = f" to {self.apis}" if self.apis else ""
        return f"{self.percent}% of the endpoint's requests{apis} are mirrored to {self.revision}"


@dataclass(frozen=True)
class ShadowStopped(DeploymentEvent):
    kind = EventKind.SHADOW
    pairs: int
    reason: str

    def describe(self) -> str:
        return (
            f"mirroring to {self.revision} stopped after {self.pairs} pairs{_because(self.reason)}"
        )


@dataclass(frozen=True)
class ShadowJudged(DeploymentEvent):
    kind = EventKind.ANALYSIS
    held: bool
    figures: str
    """The pairs' figures and the verdict, as one line."""

    def describe(self) -> str:
        return f"shadow {self.revision} {self.figures}"


@dataclass(frozen=True)
class ApprovalRequested(DeploymentEvent):
    kind = EventKind.APPROVAL
    approval: str
    message: str

    def describe(self) -> str:
        said = f": {self.message}" if self.message else ""
        return f"approval {self.approval} of {self.revision} requested{said}"


@dataclass(frozen=True)
class ApprovalDecided(DeploymentEvent):
    kind = EventKind.APPROVAL
    approval: str
    decision: str
    """``approved``, ``rejected``, ``expired`` or ``withdrawn``."""
    by: str
    comment: str

    def describe(self) -> str:
        who = f" by {self.by}" if self.by else ""
        decided = f"approval {self.approval} of {self.revision} {self.decision}{who}"
        return f"{decided}{_because(self.comment)}"


@dataclass(frozen=True)
class Crashed(DeploymentEvent):
    kind = EventKind.CRASHED
    replica: int
    code: int | None

    def describe(self) -> str:
        return f"{self.revision} replica {self.replica} exited (code {self.code}); restarting"


@dataclass(frozen=True)
class Restarted(DeploymentEvent):
    """The serving revision (or one replica of it) serves again; ``on_gpus``: a failed
    Recreate starts it again on its GPUs."""

    kind = EventKind.RESTARTED
    replica: int | None = None
    on_gpus: bool = False

    def describe(self) -> str:
        if self.on_gpus:
            return f"{self.revision} starts again on its GPUs"
        return f"{self.revision}{_replica(self.replica)} serves again"


@dataclass(frozen=True)
class GpusGiven(DeploymentEvent):
    kind = EventKind.GPUS
    replica: int
    devices: str
    request: str

    def describe(self) -> str:
        which = f" replica {self.replica}" if self.replica else ""
        return f"{self.revision}{which} gets GPU {self.devices} ({self.request})"


@dataclass(frozen=True)
class Recreating(DeploymentEvent):
    kind = EventKind.RECREATE
    reason: str

    def describe(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Scaled(DeploymentEvent):
    kind = EventKind.SCALED
    before: int
    after: int
    outstanding: int
    concurrency: int | None

    def describe(self) -> str:
        because = f"{self.outstanding} requests outstanding, concurrency {self.concurrency}"
        return f"{self.revision} scales from {self.before} to {self.after} replicas ({because})"


@dataclass(frozen=True)
class ScaleUpHeld(DeploymentEvent):
    kind = EventKind.SCALED
    wanted: int
    reached: int
    why: str

    def describe(self) -> str:
        return f"{self.revision} scale-up to {self.wanted} held at {self.reached}: {self.why}"


@dataclass(frozen=True)
class ReplicaAdded(DeploymentEvent):
    kind = EventKind.SCALED
    replica: int

    def describe(self) -> str:
        return f"{self.revision} replica {self.replica} started (scale-up)"


@dataclass(frozen=True)
class ScaledToZero(DeploymentEvent):
    kind = EventKind.SCALED_TO_ZERO
    idle_seconds: float

    def describe(self) -> str:
        return f"scaled to zero after {self.idle_seconds:.0f} s idle"


@dataclass(frozen=True)
class Woken(DeploymentEvent):
    kind = EventKind.WOKEN

    def describe(self) -> str:
        return "a request arrived: starting again"


@dataclass(frozen=True)
class Terminated(DeploymentEvent):
    kind = EventKind.TERMINATED
    deployment: str

    def describe(self) -> str:
        return f"deployment {self.deployment} terminated"


@dataclass(frozen=True)
class InternalError(DeploymentEvent):
    kind = EventKind.INTERNAL_ERROR
    problem: str

    def describe(self) -> str:
        return f"internal error: {self.problem}"


EVENT_TYPES: dict[str, type[DeploymentEvent]] = {
    cls.__name__: cls
    for cls in (
        Created,
        Starting,
        Ready,
        Held,
        Switched,
        Failed,
        Cancelled,
        Warm,
        Retired,
        RolledBack,
        Promoted,
        Discarded,
        CanaryWeight,
        AnalysisStarted,
        StepJudged,
        AnalysisEnded,
        ShadowStarted,
        ShadowStopped,
        ShadowJudged,
        ApprovalRequested,
        ApprovalDecided,
        Crashed,
        Restarted,
        GpusGiven,
        Recreating,
        Scaled,
        ScaleUpHeld,
        ReplicaAdded,
        ScaledToZero,
        Woken,
        Terminated,
        InternalError,
    )
}
"""Every typed event, by class name (the ``type`` of its stored fields)."""


def event_from(data: dict[str, Any]) -> DeploymentEvent:
    """The typed event whose fields (:meth:`DeploymentEvent.fields`) these are."""
    fields = dict(data)
    return EVENT_TYPES[fields.pop("type")](**fields)


class EventLog:
    """The outbox: publish typed events, read them from a cursor, prune what all have read."""

    def __init__(
        self, store: Store, *, keep_seconds: float = KEEP_SECONDS, keep_rows: int = KEEP_ROWS
    ) -> None:
        self.store = store
        self.keep_seconds = keep_seconds
        self.keep_rows = keep_rows
        self._published = 0

    def publish(self, deployment: str, event: DeploymentEvent) -> Event:
        """Append ``event`` to ``deployment``'s events (after the change it tells of)."""
        stored = self.store.add_event(
            Event(
                deployment,
                time.time(),
                str(event.kind),
                event.describe(),
                event.revision,
                data=json.dumps(event.fields()),
            )
        )
        self._published += 1
        if self._published % PRUNE_EVERY == 0:
            self.prune()
        return stored

    def of(
        self, deployment: str, *, after: int | None = None, since: float = 0.0, limit: int = 1000
    ) -> list[Event]:
        """With ``after`` (a cursor: the last id read, 0 before the first), the oldest ``limit``
        events after it; without, the newest ``limit``; oldest first either way."""
        return self.store.list_events(deployment, after=after, since=since, limit=limit)

    def register(self, reader: str) -> int:
        """Keep ``reader``'s cursor (from the newest event now, if new); return it."""
        return self.store.register_event_reader(reader)

    def advance(self, reader: str, cursor: int) -> None:
        """``reader`` has taken every event up to ``cursor``."""
        self.store.move_event_reader(reader, cursor)

    def prune(self, now: float | None = None) -> int:
        """Drop events older than the age bound or beyond the count bound, but none that a
        registered reader has not passed; return how many were dropped."""
        cutoff = (time.time() if now is None else now) - self.keep_seconds
        return self.store.prune_events(cutoff, self.keep_rows)
