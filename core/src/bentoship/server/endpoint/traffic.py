"""The one count of requests per revision: answers by status class, a latency histogram, and
the requests in flight.

The endpoint proxy records every request here; the traffic route (and canary analysis through
it), the revisions listing, the metrics store (observe.sampler) and the Prometheus exposition
(observe.exposition) read the same counters.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BOUNDS", "RevisionTraffic", "TrafficBook"]


def _bounds() -> tuple[float, ...]:
    bounds, value = [], 0.001
    while value < 60.0:
        bounds.append(round(value, 6))
        value *= 1.25
    return (*bounds, 60.0)


LATENCY_BOUNDS: tuple[float, ...] = _bounds()
"""Upper bounds in seconds of the latency buckets (1 ms to 60 s, 25% apart), then +Inf."""


@dataclass
class RevisionTraffic:
    """What the endpoint saw one revision answer: counts only ever grow."""

    requests: int = 0
    errors: int = 0
    """Answers with a 5xx status, including the proxy's own 502 when the revision did not answer."""
    by_class: list[int] = field(default_factory=lambda: [0] * 5)
    """Answers by status class: 1xx, 2xx, 3xx, 4xx, 5xx."""
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    seconds: float = 0.0
    """The sum of the answers' latencies."""
    in_progress: int = 0
    last_seen: float = 0.0

    def record(self, status: int, seconds: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        self.by_class[min(max(status // 100, 1), 5) - 1] += 1
        self.buckets[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.seconds += seconds
        self.last_seen = time.time()

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "latency_buckets": self.buckets}


class TrafficBook:
    """Every revision's traffic, by revision uid (in memory; it starts at zero on restart)."""

    def __init__(self) -> None:
        self._revisions: dict[str, RevisionTraffic] = {}

    def _traffic(self, revision: str) -> RevisionTraffic:
        traffic = self._revisions.get(revision)
        if traffic is None:
            traffic = self._revisions[revision] = RevisionTraffic()
        return traffic

    def started(self, revision: str) -> None:
        """A request went to ``revision``: it is in flight until ``ended``."""
        self._traffic(revision).in_progress += 1

    def ended(self, revision: str) -> None:
        """A request in flight to ``revision`` ended, answered or not."""
        self._traffic(revision).in_progress -= 1

    def record(self, revision: str, status: int, seconds: float) -> None:
        """``revision`` answered with ``status`` after ``seconds``."""
        self._traffic(revision).record(status, seconds)

    def revisions(self) -> dict[str, RevisionTraffic]:
        """Every revision's traffic, by uid."""
        return dict(self._revisions)

    def of(self, revision: str) -> RevisionTraffic:
        return self._revisions.get(revision) or RevisionTraffic()

    def forget(self, revisions: list[str]) -> None:
        for uid in revisions:
            self._revisions.pop(uid, None)
