"""Canary analysis: the policy, the figures of a window of traffic, and each step's verdict.

The figures come from the endpoint's per-revision counts (:class:`~bentoship.models.TrafficReport`);
the difference of two reports is the traffic between them. p99 is read from the latency
histogram as Prometheus's ``histogram_quantile`` does: linear within the bucket.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ._settings import from_mapping
from .errors import InvalidRequestError
from .models import TrafficReport

__all__ = [
    "CanaryAnalysis",
    "CanaryPolicy",
    "StepVerdict",
    "WindowStats",
    "judge_step",
    "quantile",
    "window_stats",
]


@dataclass(frozen=True)
class CanaryPolicy:
    """How a canary is ramped and what it must hold at each step.

    The defaults follow Flagger's: a success rate of at least 99%, and a p99 latency of at most
    1.5 times the baseline's plus 50 ms; each step lasts ``interval`` seconds and needs at least
    ``min_requests`` answers from the candidate (it waits up to ``step_timeout`` for them).
    """

    steps: tuple[int, ...] = (10, 50, 100)
    interval: float = 60.0
    min_requests: int = 100
    min_success_rate: float = 0.99
    max_p99_ratio: float = 1.5
    p99_slack_ms: float = 50.0
    step_timeout: float | None = None
    route_type: str = "random"
    route_by: str | None = None

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        if not steps or any(not isinstance(w, int) or not 0 < w <= 100 for w in steps):
            raise InvalidRequestError(
                f"canary steps must be weights from 1 to 100, such as (10, 50, 100); got {steps}"
            )
        if list(steps) != sorted(steps):
            raise InvalidRequestError(f"canary steps must rise, such as (10, 50, 100); got {steps}")
        if self.interval <= 0 or self.min_requests < 1:
            raise InvalidRequestError("canary interval must be > 0 s and min_requests >= 1")
        if not 0 < self.min_success_rate <= 1:
            raise InvalidRequestError("min_success_rate is a fraction such as 0.99")
        if self.route_type not in ("random", "header", "query"):
            raise InvalidRequestError("route_type must be random, header or query")
        if self.route_type != "random" and not self.route_by:
            raise InvalidRequestError(f"route_type {self.route_type} needs route_by")

    @property
    def wait_limit(self) -> float:
        """How long one step may wait for ``min_requests`` before it fails."""
        return self.step_timeout if self.step_timeout is not None else 10 * self.interval

    def step_over(self, candidate_requests: int, passed: bool, elapsed: float) -> bool:
        """Whether a step is decided: it failed with enough requests, held for its interval
        with enough, or waited ``wait_limit`` for them."""
        enough = candidate_requests >= self.min_requests
        return (enough and (not passed or elapsed >= self.interval)) or elapsed >= self.wait_limit

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CanaryPolicy:
        """From the plain mapping orchestrators pass around (unknown keys are errors)."""
        data = dict(data or {})
        if "steps" in data:
            data["steps"] = tuple(int(w) for w in data["steps"])
        return from_mapping(cls, data, "canary")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        return data


@dataclass(frozen=True)
class WindowStats:
    """One revision's answers in a window of time."""

    requests: int
    errors: int
    p99_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return None if self.requests == 0 else 1 - self.errors / self.requests

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success_rate": self.success_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowStats:
        p99 = data.get("p99_ms")
        return cls(int(data["requests"]), int(data["errors"]), None if p99 is None else float(p99))

    def describe(self) -> str:
        """``57 requests, 100.00% success, p99 12 ms``: the figures in a line."""
        rate = "no answers" if self.success_rate is None else f"{self.success_rate:.2%} success"
        p99 = "no p99" if self.p99_ms is None else f"p99 {self.p99_ms:.0f} ms"
        return f"{self.requests} requests, {rate}, {p99}"


def quantile(bounds: tuple[float, ...], counts: tuple[int, ...], q: float) -> float | None:
    """The ``q`` quantile in seconds of a histogram (counts per bucket, the last one +Inf)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def window_stats(before: TrafficReport, after: TrafficReport, revision: str | None) -> WindowStats:
    """``revision``'s answers between two reports (zero for None or an unseen revision)."""
    if revision is None:
        return WindowStats(0, 0, None)
    empty = (0,) * (len(after.latency_bounds) + 1)
    old = before.latency_buckets.get(revision, empty)
    new = after.latency_buckets.get(revision, empty)
    counts = tuple(n - o for n, o in zip(new, old, strict=True))
    p99 = quantile(after.latency_bounds, counts, 0.99)
    return WindowStats(
        requests=after.requests.get(revision, 0) - before.requests.get(revision, 0),
        errors=after.errors.get(revision, 0) - before.errors.get(revision, 0),
        p99_ms=None if p99 is None else round(p99 * 1000, 3),
    )


@dataclass(frozen=True)
class StepVerdict:
    """One step of the ramp: the candidate's figures, the baseline's, and what failed."""

    weight: int
    candidate: WindowStats
    baseline: WindowStats
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "passed": self.passed,
            "candidate": self.candidate.to_dict(),
            "baseline": self.baseline.to_dict(),
            "problems": list(self.problems),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepVerdict:
        return cls(
            int(data["weight"]),
            WindowStats.from_dict(data["candidate"]),
            WindowStats.from_dict(data["baseline"]),
            tuple(str(p) for p in data.get("problems") or ()),
        )

    def describe(self) -> str:
        """The step's figures against the baseline's, and its verdict, in a line."""
        verdict = "held" if self.passed else f"failed: {'; '.join(self.problems)}"
        return (
            f"at {self.weight}%: candidate {self.candidate.describe()}; "
            f"baseline {self.baseline.describe()}; {verdict}"
        )


def judge_step(
    policy: CanaryPolicy, weight: int, candidate: WindowStats, baseline: WindowStats
) -> StepVerdict:
    """Check the candidate's figures at one step against the policy and the baseline."""
    problems: list[str] = []
    if candidate.requests < policy.min_requests:
        problems.append(
            f"only {candidate.requests} requests reached the candidate at {weight}% "
            f"(it needs {policy.min_requests}); send more traffic or lower min_requests"
        )
    rate = candidate.success_rate
    if rate is not None and rate < policy.min_success_rate:
        problems.append(
            f"success rate {rate:.2%} ({candidate.errors} of {candidate.requests} answers were "
            f"5xx) is below {policy.min_success_rate:.2%}"
        )
    if candidate.p99_ms is not None and baseline.p99_ms is not None:
        limit = policy.max_p99_ratio * baseline.p99_ms + policy.p99_slack_ms
        if candidate.p99_ms > limit:
            problems.append(
                f"p99 {candidate.p99_ms:.0f} ms is above {limit:.0f} ms "
                f"({policy.max_p99_ratio:g} x the baseline's {baseline.p99_ms:.0f} ms "
                f"+ {policy.p99_slack_ms:g} ms)"
            )
    return StepVerdict(weight, candidate, baseline, tuple(problems))


@dataclass(frozen=True)
class CanaryAnalysis:
    """The outcome: ``promoted`` or ``rolled_back``, why, and every step's figures."""

    deployment: str
    candidate: str | None
    baseline: str | None
    verdict: str
    reason: str
    steps: list[StepVerdict] = field(default_factory=list)
    policy: CanaryPolicy = field(default_factory=CanaryPolicy)

    @property
    def promoted(self) -> bool:
        return self.verdict == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "verdict": self.verdict,
            "reason": self.reason,
            "steps": [step.to_dict() for step in self.steps],
            "policy": self.policy.to_dict(),
        }
