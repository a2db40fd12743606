"""The endpoint's spans: which requests are traced (head sampling), the W3C ``traceparent``
the proxy passes on to the revision, and the span each traced request leaves.

A request is traced when its caller sent a sampled ``traceparent`` (the trace goes on under
the caller's trace id), when it goes to a candidate or is mirrored to one, when it is the
first request of a revision whose deploy sent its trace context, or else with the sampling
rate. The revision gets ``traceparent`` naming the proxy's span, sampled, so bentoml's own
spans of the request arrive as its children.
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "TRACEPARENT",
    "DeployParent",
    "RequestSpan",
    "SpanIds",
    "SpanSink",
    "Tracing",
    "incoming_parent",
]

TRACEPARENT = b"traceparent"
PARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
RANDOM_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DeployParent:
    """The span of the deploy that made a revision: its first request is recorded under it."""

    trace_id: str
    span_id: str
    deployment: str
    revision: str
    """The revision's name (``r3``)."""
    uid: str
    """The revision's uid."""


@dataclass(slots=True)
class RequestSpan:
    """The proxy's span of one request, from its routing to its end."""

    trace_id: str
    span_id: str
    parent_id: str | None
    start: float
    """Seconds since the epoch."""
    first: DeployParent | None = None
    """Set on the first request of a revision whose deploy is awaiting it."""

    @property
    def traceparent(self) -> bytes:
        return b"00-%b-%b-01" % (self.trace_id.encode(), self.span_id.encode())


class SpanIds:
    """Random trace and span ids in hex, cut from one ``os.urandom`` read of 4 KiB at a time."""

    __slots__ = ("_at", "_hex")

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0

    def _take(self, digits: int) -> str:
        at = self._at
        end = at + digits
        if end > len(self._hex):
            self._hex = os.urandom(RANDOM_BYTES).hex()
            at, end = 0, digits
        self._at = end
        return self._hex[at:end]

    def span_id(self) -> str:
        found = self._take(16)
        return found if found != "0" * 16 else self.span_id()

    def trace_id(self) -> str:
        found = self._take(32)
        return found if found != "0" * 32 else self.trace_id()


def incoming_parent(headers: list[tuple[bytes, bytes]]) -> tuple[str, str, bool] | None:
    """The caller's ``traceparent``: (trace id, parent span id, sampled), if valid."""
    for key, value in headers:
        if key == TRACEPARENT:
            found = PARENT.fullmatch(value.strip().lower())
            if found is None or found.group(1) == b"0" * 32 or found.group(2) == b"0" * 16:
                return None
            sampled = bool(int(found.group(3), 16) & 1)
            return found.group(1).decode(), found.group(2).decode(), sampled
    return None


class SpanSink(Protocol):
    """Where ended request spans go (the control plane's span store)."""

    def request_span(
        self,
        span: RequestSpan,
        name: str,
        deployment: str,
        revision: str | None,
        attributes: dict[str, object],
        duration_ms: float,
        error: bool,
    ) -> None: ...


class Tracing:
    """Decides which requests are traced, and hands their spans to ``sink``."""

    def __init__(self, rate: float, sink: SpanSink | None = None) -> None:
        self.rate = rate
        self.sink = sink
        self.ids = SpanIds()
        self.awaited: dict[str, DeployParent] = {}
        """Revisions (by uid) whose first request is to be recorded under their deploy."""

    def await_first(self, parent: DeployParent) -> bool:
        """Trace the first request that revision ``parent.uid`` serves, and hand it over with
        ``parent``; False when that revision is awaited already (its first deploy wins)."""
        if parent.uid in self.awaited:
            return False
        self.awaited[parent.uid] = parent
        return True

    def begin(
        self,
        headers: list[tuple[bytes, bytes]],
        *,
        always: bool = False,
        revision: str | None = None,
    ) -> RequestSpan | None:
        """The span of a request to ``revision`` (its uid) when it is traced, else None."""
        if self.sink is None:
            return None
        first = self.awaited.pop(revision, None) if self.awaited and revision else None
        parent = incoming_parent(headers)
        sampled = always or first is not None or (parent is not None and parent[2])
        if not sampled and (self.rate <= 0 or random.random() >= self.rate):
            return None
        ids = self.ids
        if parent is not None:
            return RequestSpan(parent[0], ids.span_id(), parent[1], time.time(), first)
        return RequestSpan(ids.trace_id(), ids.span_id(), None, time.time(), first)
