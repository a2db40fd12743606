"""The endpoint's spans: which requests are traced (head sampling), the W3C ``traceparent``
the proxy passes on to the revision, and the span each traced request leaves.

A request is traced when its caller sent a sampled ``traceparent`` (the trace goes on under
the caller's trace id), when it goes to a candidate or is mirrored to one, or else with the
sampling rate. The revision gets ``traceparent`` naming the proxy's span, sampled, so
bentoml's own spans of the request arrive as its children.
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["TRACEPARENT", "RequestSpan", "SpanSink", "Tracing", "incoming_parent"]

TRACEPARENT = b"traceparent"
PARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(slots=True)
class RequestSpan:
    """The proxy's span of one request, from its routing to its end."""

    trace_id: str
    span_id: str
    parent_id: str | None
    start: float
    """Seconds since the epoch."""

    @property
    def traceparent(self) -> bytes:
        return b"00-%b-%b-01" % (self.trace_id.encode(), self.span_id.encode())


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

    def begin(
        self, headers: list[tuple[bytes, bytes]], *, always: bool = False
    ) -> RequestSpan | None:
        """The request's span when it is traced, else None."""
        if self.sink is None:
            return None
        parent = incoming_parent(headers)
        sampled = always or (parent is not None and parent[2])
        if not sampled and (self.rate <= 0 or random.random() >= self.rate):
            return None
        span_id = os.urandom(8).hex()
        if parent is not None:
            return RequestSpan(parent[0], span_id, parent[1], time.time())
        return RequestSpan(os.urandom(16).hex(), span_id, None, time.time())
