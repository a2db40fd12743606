"""What shadow traffic showed: how often the candidate agreed with the serving revision, how
its labels and numbers moved, and both revisions' errors and latency."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

__all__ = ["Agreement", "Differences", "Latency", "RevisionFigures", "ShadowReport"]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _change(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


@dataclass(frozen=True)
class Agreement:
    """How many compared pairs agreed, with the Wilson interval of the rate."""

    agreed: int = 0
    compared: int = 0
    """Pairs where neither revision errored."""
    low: float | None = None
    high: float | None = None
    confidence: float = 0.95

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


@dataclass(frozen=True)
class Latency:
    """Percentiles of a revision's answer times, in milliseconds."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True)
class RevisionFigures:
    """One side's requests, errors (5xx or no answer) and latency, over every pair."""

    revision: str = ""
    """The revision's id (several, comma-separated, if the side changed during the run)."""
    requests: int = 0
    errors: int = 0
    latency_ms: Latency = field(default_factory=Latency)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Differences:
    """``|candidate - serving|`` over the numbers of the numeric pairs, element by element."""

    pairs: int = 0
    count: int = 0
    """How many numbers were measured."""
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ShadowReport:
    pairs: int
    dropped: int
    """Mirrored requests whose answers were not recorded (the mirror's queue was full)."""
    tolerance: float
    agreement: Agreement
    serving: RevisionFigures
    candidate: RevisionFigures
    flips: dict[str, dict[str, int]] = field(default_factory=dict)
    """The label-flip matrix: serving label -> candidate label -> pairs (unchanged ones too)."""
    differences: Differences = field(default_factory=Differences)
    by_digest: int = 0
    """Compared pairs judged by the digests of their bodies (a body was not JSON or too large)."""
    first_time: float | None = None
    last_time: float | None = None

    @property
    def labelled(self) -> int:
        """Compared pairs whose two answers are class labels."""
        return sum(sum(row.values()) for row in self.flips.values())

    @property
    def flipped(self) -> int:
        """Labelled pairs whose label changed."""
        return sum(n for was, row in self.flips.items() for now, n in row.items() if now != was)

    @property
    def error_rate_change(self) -> float | None:
        """The candidate's error rate minus the serving revision's."""
        return _change(self.candidate.error_rate, self.serving.error_rate)

    @property
    def latency_change_ms(self) -> Latency:
        """The candidate's latency percentiles minus the serving revision's."""
        after, before = self.candidate.latency_ms, self.serving.latency_ms
        return Latency(
            _change(after.p50, before.p50),
            _change(after.p95, before.p95),
            _change(after.p99, before.p99),
        )

    def summary(self) -> str:
        """One line: the agreement and its interval, flips, error rates and p95 latency."""
        agreement = self.agreement
        if agreement.compared:
            line = (
                f"candidate {self.candidate.revision} agrees with serving "
                f"{self.serving.revision} on {_percent(agreement.rate)} of {agreement.compared} "
                f"compared pairs ({agreement.confidence:.0%} CI {_percent(agreement.low)}-"
                f"{_percent(agreement.high)})"
            )
        else:
            line = f"no pair compared ({self.candidate.revision} against {self.serving.revision})"
        if self.labelled:
            line += f"; {self.flipped} of {self.labelled} labels flipped"
        if self.differences.count:
            line += f"; max difference {self.differences.max:.3g}"
        line += (
            f"; errors {_percent(self.serving.error_rate)} -> {_percent(self.candidate.error_rate)}"
        )
        before, after = self.serving.latency_ms.p95, self.candidate.latency_ms.p95
        if before is not None and after is not None:
            line += f"; p95 {before:.0f} -> {after:.0f} ms ({after - before:+.0f} ms)"
        return f"{line}; {self.pairs} pairs, {self.dropped} dropped"

    def to_dict(self) -> dict[str, Any]:
        """Every field, and the derived figures (rates and changes) beside them."""
        return {
            "pairs": self.pairs,
            "dropped": self.dropped,
            "tolerance": self.tolerance,
            "agreement": {**asdict(self.agreement), "rate": self.agreement.rate},
            "serving": {**asdict(self.serving), "error_rate": self.serving.error_rate},
            "candidate": {**asdict(self.candidate), "error_rate": self.candidate.error_rate},
            "error_rate_change": self.error_rate_change,
            "latency_change_ms": asdict(self.latency_change_ms),
            "flips": self.flips,
            "labelled": self.labelled,
            "flipped": self.flipped,
            "differences": asdict(self.differences),
            "by_digest": self.by_digest,
            "first_time": self.first_time,
            "last_time": self.last_time,
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShadowReport:
        """The report that :meth:`to_dict` gave (derived figures are recomputed)."""
        agreement = {k: v for k, v in data["agreement"].items() if k != "rate"}
        return cls(
            pairs=data["pairs"],
            dropped=data["dropped"],
            tolerance=data["tolerance"],
            agreement=Agreement(**agreement),
            serving=_revision(data["serving"]),
            candidate=_revision(data["candidate"]),
            flips={was: dict(row) for was, row in data["flips"].items()},
            differences=Differences(**data["differences"]),
            by_digest=data.get("by_digest", 0),
            first_time=data.get("first_time"),
            last_time=data.get("last_time"),
        )


def _revision(data: dict[str, Any]) -> RevisionFigures:
    return RevisionFigures(
        revision=data["revision"],
        requests=data["requests"],
        errors=data["errors"],
        latency_ms=Latency(**data["latency_ms"]),
    )
